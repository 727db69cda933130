from django.apps import AppConfig
from django.core import checks


class AicmoSiteConfig(AppConfig):
    name = "aicmo_site"
    verbose_name = "AICMO site"

    def ready(self) -> None:
        # The checks belong to ventures (the site depends on the apps, never the reverse);
        # the site only makes them system checks, run by every manage.py command.
        from django.contrib import admin

        from ventures.admin_toolkit import guard_admin_site
        from ventures.preflight import settings_checks

        checks.register(settings_checks, "aicmo")
        # Admins the project did not write (auth, django-q2) get the console's answer to a
        # bad query string too: a message, never a 500.
        guard_admin_site(admin.site)
