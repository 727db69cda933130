"""Create the database cache tables (settings.CACHES) as part of `migrate`.

The capture form's rate limiter keeps its counters in a DatabaseCache table so that the limit
holds across processes. Django makes such tables only with `createcachetable`; doing it here
means a plain `migrate` leaves a working installation. `createcachetable` skips tables that
exist, so this is safe to run again.
"""

from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies: list = []
    operations = [migrations.RunPython(create_cache_tables, migrations.RunPython.noop)]
