"""Fixtures of the leads tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from leads.services.imports import lead_import


@pytest.fixture
def sample_dir() -> Path:
    """The sample exports in ../shared/data beside the clone (the CI has them there too)."""
    path = Path(settings.BASE_DIR).parent / "shared" / "data"
    if not path.is_dir():
        pytest.fail(f"The sample lead exports are missing: {path}")
    return path


@pytest.fixture
def write_csv(tmp_path):
    """Write text to a file in tmp_path with the given encoding; returns its path."""
    counter = iter(range(1000))

    def write(text: str, *, encoding: str = "utf-8", name: str = "") -> Path:
        path = tmp_path / (name or f"leads_{next(counter)}.csv")
        path.write_bytes(text.encode(encoding))
        return path

    return write


@pytest.fixture
def run_import(campaign):
    """Import a file into `campaign` (or another) as the test operator; returns the outcome."""

    def run(path, *, into=None, **kwargs):
        return lead_import(campaign=into or campaign, path=path, actor="test", **kwargs)

    return run
