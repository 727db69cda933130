"""ImportRowError becomes ImportIssue: it holds duplicates, suppressed and skipped rows as well
as invalid ones. The table is renamed in place (no data is copied); its indexes and constraints keep
their names."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("leads", "0009_references_checked_per_statement"),
    ]

    operations = [
        migrations.RenameModel(old_name="ImportRowError", new_name="ImportIssue"),
        migrations.AlterField(
            model_name="importissue",
            name="batch",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="issues",
                to="leads.importbatch",
            ),
        ),
    ]
