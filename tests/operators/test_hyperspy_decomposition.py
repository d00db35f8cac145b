"""hyperspy_decomposition: HyperSpy's SVD denoising in its own environment.

Truth: a truncated singular value decomposition in numpy (Eckart-Young: the best
rank-N approximation is unique when the singular values are distinct), with the
Poisson weighting of Keenan and Kotula (2004) written out here: divide by
sqrt(row sums) x sqrt(column sums), truncate, multiply back.
"""

import numpy as np
import pytest
from _isolated import run_isolated
from packaging.version import Version
from test_4dstem import mos2_4dstem

pytestmark = pytest.mark.timeout(1200)


def truncated(matrix, n, poisson=False):
    """Best rank-n approximation of ``matrix`` (rows: navigation, columns: signal)."""
    matrix = matrix.astype(np.float64)
    if poisson:
        rows, cols = np.sqrt(matrix.sum(axis=1))[:, None], np.sqrt(matrix.sum(axis=0))[None, :]
        cols[cols == 0] = 1  # empty channels stay zero
        return truncated(matrix / rows / cols, n) * rows * cols
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    return (u[:, :n] * s[:n]) @ vt[:n]


@pytest.fixture(scope="module")
def low_rank():
    """A rank-3 spectrum image (12 x 10 x 128) of Poisson counts, and its noise-free truth."""
    rng = np.random.default_rng(1)
    energy = np.arange(128)
    spectra = np.stack([np.exp(-((energy - c) ** 2) / (2 * w**2)) for c, w in ((30, 6), (64, 10), (95, 4))])
    maps = rng.random((120, 3)) + 0.2
    clean = 40 * (maps @ spectra) + 2
    return rng.poisson(clean).astype(np.float32).reshape(12, 10, 128), clean.reshape(12, 10, 128)


@pytest.mark.parametrize("poisson", [False, True])
def test_spectrum_image_equals_numpy_truncated_svd(stack_engine, low_rank, poisson):
    noisy, clean = low_rank
    params = {"components": 3, "signal_dims": 1, "poisson": poisson}
    out, env = run_isolated(stack_engine, "hyperspy_decomposition", {"data": noisy}, params)
    expected = truncated(noisy.reshape(120, 128), 3, poisson).reshape(noisy.shape)
    np.testing.assert_allclose(out["data"].data, expected, rtol=1e-7, atol=1e-7 * np.abs(expected).max())
    # Denoising: the rank-3 model is much closer to the truth than the counts were.
    assert np.abs(out["data"].data - clean).mean() < 0.4 * np.abs(noisy - clean).mean()
    assert Version(env["packages"]["hyperspy"]) >= Version("2.1") and env["packages"]["numpy"].startswith("2.")


def test_variance_is_the_squared_singular_values(stack_engine, low_rank):
    noisy, _ = low_rank
    params = {"components": 3, "signal_dims": 1, "poisson": False}
    out, _ = run_isolated(stack_engine, "hyperspy_decomposition", {"data": noisy}, params)
    s = np.linalg.svd(noisy.reshape(120, 128).astype(np.float64), compute_uv=False)
    variance = out["variance"].data
    np.testing.assert_allclose(variance / variance[0], (s[: len(variance)] / s[0]) ** 2, rtol=1e-9)


def test_4dstem_scan_with_poisson_weighting(stack_engine):
    data = mos2_4dstem()[0]
    out, _ = run_isolated(stack_engine, "hyperspy_decomposition", {"data": data}, {"components": 4})
    expected = truncated(data.reshape(256, -1), 4, poisson=True).reshape(data.shape)
    assert out["data"].data.shape == data.shape
    np.testing.assert_allclose(out["data"].data, expected, rtol=1e-6, atol=1e-6 * expected.max())


def test_nmf_is_non_negative_and_denoises(stack_engine, low_rank):
    noisy, clean = low_rank
    params = {"components": 3, "signal_dims": 1, "algorithm": "NMF", "poisson": False}
    out, _ = run_isolated(stack_engine, "hyperspy_decomposition", {"data": noisy}, params)
    assert out["data"].data.min() >= 0
    assert np.abs(out["data"].data - clean).mean() < 0.5 * np.abs(noisy - clean).mean()
