"""Shared fixtures: the upstream pipelines that must keep loading, a small shared-memory folder."""

from pathlib import Path

import pytest

from oremda_lab.testing import small_tmpfs

UPSTREAM = Path(__file__).resolve().parent / "upstream_pipelines"


@pytest.fixture(params=["pipeline_1d.json", "pipeline_2d.json"])
def upstream_pipeline(request) -> Path:
    """An upstream OREMDA pipeline file (a copy ships with the tests)."""
    return UPSTREAM / request.param


@pytest.fixture
def small_shm(monkeypatch):
    """A 64 MiB tmpfs as the shared-memory root (``OREMDA_SHM_DIR``); skipped unless root."""
    try:
        with small_tmpfs() as folder:
            monkeypatch.setenv("OREMDA_SHM_DIR", str(folder))
            yield folder
    except PermissionError as e:
        pytest.skip(str(e))
