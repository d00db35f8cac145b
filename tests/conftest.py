"""Shared fixtures: the upstream pipelines that must keep loading, a small shared-memory folder."""

from pathlib import Path

import pytest

from oremda_lab.testing import small_shm  # noqa: F401  (a fixture for every test module)

UPSTREAM = Path(__file__).resolve().parent / "upstream_pipelines"


@pytest.fixture(params=["pipeline_1d.json", "pipeline_2d.json"])
def upstream_pipeline(request) -> Path:
    """An upstream OREMDA pipeline file (a copy ships with the tests)."""
    return UPSTREAM / request.param
