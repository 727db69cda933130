"""Create the Operator, Viewer and Administrator roles (ventures/roles.py says what each holds).

Later migrations re-sync the groups automatically after `migrate` (post_migrate), so models
added by later apps join the roles without another hand-written migration.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from ventures.roles import sync_roles


def create_roles(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    sync_roles(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(
        name__in=["Administrator", "Operator", "Viewer"]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("ventures", "0002_audit_append_only"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_roles, remove_roles)]
