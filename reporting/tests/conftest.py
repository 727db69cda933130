import pytest


@pytest.fixture
def report_settings(settings, tmp_path):
    """Caps out of the way of the known campaign's sends, and artifacts in a fresh directory."""
    settings.AICMO_GLOBAL_DAILY_LIMIT = 1_000_000
    settings.AICMO_RECIPIENT_DOMAIN_DAILY_LIMIT = 1_000_000
    settings.AICMO_ARTIFACT_DIR = tmp_path / "artifacts"
    return settings
