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


def test_a_periodic_image_gives_back_its_cell_exactly():
    # Rectangular 20 x 20 cells on an integer origin: every sample lands on a pixel, so the
    # average of identical cells is the cell itself. Rows run along v (here y), columns along u (x).
    cell = np.random.default_rng(1).random((20, 20))
    oy, ox = 5, 7
    y, x = np.mgrid[:200, :200]
    image = cell[(y - oy) % 20, (x - ox) % 20]
    o, u, v = np.array([oy, ox], float), np.array([0.0, 20.0]), np.array([20.0, 0.0])
    out = run_operator("unit_cell", {"image": image, "origin": o, "u": u, "v": v})["image"]
    np.testing.assert_allclose(out.data, cell, atol=1e-12)
    # Whole cells: corners 5 + 20 j and 7 + 20 i up to 199, so i, j in 0..8.
    assert out.meta["n_cells"] == 81
    # Oversampled twice, the in-between samples are the linear interpolation of neighbours.
    fine = run_operator("unit_cell", {"image": image, "origin": o, "u": u, "v": v}, {"oversample": 2})["image"].data
    np.testing.assert_allclose(fine[::2, ::2], cell, atol=1e-12)
    np.testing.assert_allclose(fine[1::2, ::2], (cell + np.roll(cell, -1, axis=0)) / 2, atol=1e-12)
    np.testing.assert_allclose(fine[::2, 1::2], (cell + np.roll(cell, -1, axis=1)) / 2, atol=1e-12)


def test_an_oblique_lattice_samples_fractional_coordinates():
    # I = f(a, b) with (a, b) the fractional coordinates of the pixel in the oblique cell, so
    # out[r, c] = f(c / n_u, r / n_v); only linear interpolation between pixels separates them.
    o, u, v = np.array([10.3, 8.6]), np.array([2.0, 24.0]), np.array([21.0, -5.0])
    y, x = np.mgrid[:240, :240].astype(float)
    a, b = np.linalg.solve(np.column_stack([u, v]), np.stack([y.ravel() - o[0], x.ravel() - o[1]]))

    def f(a, b):
        return np.cos(2 * np.pi * a) + 0.5 * np.sin(2 * np.pi * b) + 0.3 * np.cos(2 * np.pi * (a - b))

    image = f(a, b).reshape(y.shape)
    out = run_operator("unit_cell", {"image": image, "origin": o, "u": u, "v": v})["image"].data
    n_v, n_u = round(np.hypot(*v)), round(np.hypot(*u))
    assert out.shape == (n_v, n_u)
    r, c = np.mgrid[:n_v, :n_u]
    # Bilinear interpolation of a ~22 px period loses at most ~(2 pi / 22)^2 / 8 of the amplitude.
    np.testing.assert_allclose(out, f(c / n_u, r / n_v), atol=0.03)


def test_parallel_vectors_are_refused():
    with pytest.raises(RuntimeError, match="parallel"):
        run_operator("unit_cell", {"image": np.zeros((50, 50)), "origin": np.zeros(2),
                                   "u": np.array([0.0, 5.0]), "v": np.array([0.0, 10.0])})  # fmt: skip
