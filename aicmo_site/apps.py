from django.apps import AppConfig


class AicmoSiteConfig(AppConfig):
    name = "aicmo_site"
    verbose_name = "AICMO site"

    def ready(self) -> None:
        from aicmo_site import preflight  # noqa: F401  (registers the system checks)
