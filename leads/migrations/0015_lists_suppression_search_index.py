"""The suppression list's search, `value LIKE 'prefix%'`: an index with a pattern operator
class (PostgreSQL's btree serves LIKE only with one; other databases get a plain index)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("leads", "0014_console_import_audit_venture")]

    operations = [
        migrations.AddIndex(
            model_name="suppressionentry",
            index=models.Index(
                fields=["value"],
                name="suppression_value_like_idx",
                opclasses=["varchar_pattern_ops"],
            ),
        ),
    ]
