"""Fixtures for operator tests: real EM files (fetched once, then offline) and helpers.

Without the data the tests that need it skip, or fail under ``OREMDA_REQUIRE_DATA=1`` (CI sets it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import data_fixtures  # noqa: E402


def _get(func):
    try:
        return func()
    except data_fixtures.DataUnavailable as e:
        if os.environ.get("OREMDA_REQUIRE_DATA"):  # CI: missing data is a failure, not a skip
            pytest.fail(f"real test data unavailable and OREMDA_REQUIRE_DATA is set: {e}")
        pytest.skip(f"real test data unavailable (offline on first use?): {e}")


@pytest.fixture(scope="session")
def mos2_dm3() -> Path:
    """Real 1024x1024 HAADF-STEM image of MoS2 (temul-toolkit wheel)."""
    return _get(data_fixtures.mos2_dm3)


@pytest.fixture(scope="session")
def au_emd() -> Path:
    """Real Velox EMD HAADF image of a Au nanoparticle (temul-toolkit wheel)."""
    return _get(data_fixtures.au_emd)


@pytest.fixture(scope="session")
def coreloss_msa() -> Path:
    """Real core-loss EELS spectrum (exspy wheel)."""
    return _get(data_fixtures.coreloss_msa)


@pytest.fixture(scope="session")
def data_folder() -> Path:
    """All real files under their plain names, as pipelines refer to them."""
    return _get(data_fixtures.data_folder)


@pytest.fixture(scope="session")
def mos2_image(mos2_dm3) -> np.ndarray:
    """The MoS2 image as float64, read directly with rosettasciio."""
    from rsciio.digitalmicrograph import file_reader

    return file_reader(str(mos2_dm3))[0]["data"].astype(np.float64)


@pytest.fixture(scope="module")
def stack_engine(tmp_path_factory):
    """A local-runtime engine per test module for operators on their own stacks (``_isolated``)."""
    from _isolated import PREPARE_SECONDS

    from oremda_lab.engine import Engine

    with Engine("local", tmp_path_factory.mktemp("isolated"), start_timeout=PREPARE_SECONDS) as engine:
        yield engine


@pytest.fixture(scope="session")
def peer_python() -> Path:
    """A Python that has exspy/hyperspy, for reference computations in a subprocess."""
    return _get(data_fixtures.peer_python)


def hex_lattice(shape, origin, u, v, sigma, amplitude=1.0, background=0.0):
    """A sum of round Gaussians on origin + i u + j v; returns (image, true positions)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    image = np.full(shape, background, dtype=np.float64)
    n = int(max(shape) / min(np.hypot(*u), np.hypot(*v))) * 2 + 4
    positions = []
    for i in range(-n, n + 1):
        for j in range(-n, n + 1):
            y, x = np.asarray(origin) + i * np.asarray(u) + j * np.asarray(v)
            if -4 * sigma < y < shape[0] + 4 * sigma and -4 * sigma < x < shape[1] + 4 * sigma:
                image += amplitude * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
                positions.append((y, x))
    return image, np.array(positions)


@pytest.fixture
def make_lattice():
    """The synthetic lattice image maker: ``make_lattice(shape, origin, u, v, sigma)``."""
    return hex_lattice
