"""The messages' tallies (`outreach.MessageTally`, `outreach.SentQuarter`), the triggers that
keep them (`outreach.tally_triggers`), and the counts of the messages already there."""

from django.db import migrations, models

from outreach.tally_triggers import (
    MSG,
    QUARTER,
    TALLY,
    TALLY_COLUMNS,
    counted,
    key,
    quarter,
    triggers_install,
    triggers_uninstall,
)


def install(apps, schema_editor) -> None:
    """The triggers first, then the counts of the messages already there: on PostgreSQL in
    one transaction whose CREATE TRIGGER holds off every other writer of the messages until
    it commits, so no message is counted twice or missed."""
    connection = schema_editor.connection
    triggers_install(connection)
    q = quarter("", connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TALLY} ({TALLY_COLUMNS}, n) SELECT {', '.join(key(''))}, COUNT(*) "  # noqa: S608
            f"FROM {MSG} GROUP BY 1, 2, 3, 4, 5, 6, 7"
        )
        cursor.execute(
            f"INSERT INTO {QUARTER} (campaign_id, quarter, n) SELECT campaign_id, {q}, COUNT(*) "  # noqa: S608
            f"FROM {MSG} WHERE {counted('')} GROUP BY 1, 2"
        )


def uninstall(apps, schema_editor) -> None:
    triggers_uninstall(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("outreach", "0016_enrollment_unpooled_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="MessageTally",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("campaign_id", models.BigIntegerField()),
                ("step_id", models.BigIntegerField()),
                ("state", models.CharField(max_length=12)),
                ("reason_code", models.CharField(blank=True, max_length=40)),
                ("mailbox_id", models.BigIntegerField(null=True)),
                ("segment_id", models.BigIntegerField(null=True)),
                ("template_version_id", models.BigIntegerField(null=True)),
                ("n", models.IntegerField()),
            ],
            options={
                "indexes": [models.Index(fields=["campaign_id"], name="tally_campaign_idx")],
            },
        ),
        migrations.CreateModel(
            name="SentQuarter",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("campaign_id", models.BigIntegerField()),
                ("quarter", models.DateTimeField()),
                ("n", models.IntegerField()),
            ],
            options={
                "indexes": [
                    models.Index(fields=["campaign_id", "quarter"], name="sentquarter_idx")
                ],
            },
        ),
        migrations.RunPython(install, uninstall),
    ]
