import numpy as np
import pytest

from oremda_lab.testing import run_operator


def test_average_cell_of_a_synthetic_lattice(make_lattice):
    o, u, v = np.array([12.0, 9.0]), np.array([0.0, 20.0]), np.array([18.0, 6.0])
    image, _ = make_lattice((200, 200), o, u, v, sigma=2.0)
    noisy = image + np.random.default_rng(0).normal(0, 0.2, image.shape)
    out = run_operator("unit_cell", {"image": noisy, "origin": o, "u": u, "v": v})["image"]
    assert out.data.shape == (round(np.hypot(*v)), round(np.hypot(*u)))
    assert out.meta["n_cells"] > 50
    # The column sits at the cell's corner; averaging removes most of the noise.
    assert out.data[0, 0] == pytest.approx(image.max(), rel=0.05)
    clean = run_operator("unit_cell", {"image": image, "origin": o, "u": u, "v": v})["image"]
    assert np.abs(out.data - clean.data).max() < 0.15


def test_oversample_and_a_shifted_origin(make_lattice):
    o, u, v = np.array([12.0, 9.0]), np.array([0.0, 20.0]), np.array([18.0, 6.0])
    image, _ = make_lattice((200, 200), o, u, v, sigma=2.0)
    half = o + (u + v) / 2
    out = run_operator("unit_cell", {"image": image, "origin": half, "u": u, "v": v}, {"oversample": 2})["image"]
    assert out.data.shape == (2 * round(np.hypot(*v)), 2 * round(np.hypot(*u)))
    n_v, n_u = out.data.shape
    peak = np.unravel_index(np.argmax(out.data), out.data.shape)
    assert peak == (n_v // 2, n_u // 2)


def test_parallel_vectors_are_refused():
    with pytest.raises(RuntimeError, match="parallel"):
        run_operator("unit_cell", {"image": np.zeros((50, 50)), "origin": np.zeros(2),
                                   "u": np.array([0.0, 5.0]), "v": np.array([0.0, 10.0])})  # fmt: skip
