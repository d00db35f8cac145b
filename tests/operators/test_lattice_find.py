import numpy as np
import pytest

from oremda_lab.testing import run_operator


def _same_lattice(u, v, u_true, v_true, atol=0.02):
    """u, v span the same lattice as u_true, v_true (a unimodular change of basis)."""
    m = np.linalg.solve(np.column_stack([u, v]), np.column_stack([u_true, v_true]))
    assert np.allclose(m, np.round(m), atol=atol), m
    assert abs(round(np.linalg.det(np.round(m)))) == 1


def _on_lattice(point, origin, u, v, atol=0.02):
    f = np.linalg.solve(np.column_stack([u, v]), np.asarray(point) - origin)
    assert np.allclose(f, np.round(f), atol=atol), f


def _points(origin, u, v, shape, n=40):
    ij = np.mgrid[-n:n, -n:n].reshape(2, -1).T
    p = origin + ij @ np.vstack([u, v])
    return p[np.all((p >= 0) & (p < shape), axis=1)]


def test_recovers_an_oblique_lattice_from_noisy_points():
    rng = np.random.default_rng(0)
    o, u, v = np.array([100.3, 90.7]), np.array([3.0, 20.0]), np.array([19.0, -6.0])
    peaks = _points(o, u, v, (400, 400))
    peaks = peaks + rng.normal(0, 0.3, peaks.shape)
    out = run_operator("lattice_find", {"image": np.zeros((400, 400)), "peaks": peaks})
    got_u, got_v = out["u"].data, out["v"].data
    _same_lattice(got_u, got_v, u, v)
    assert np.hypot(*got_u) <= np.hypot(*got_v) and got_u @ got_v >= 0
    assert np.hypot(*got_u) == pytest.approx(np.hypot(*v), abs=0.02)  # the shortest translation
    _on_lattice(out["origin"].data, o, u, v, atol=0.01)
    residual = out["lattice"].data - peaks
    assert np.sqrt(np.mean(np.sum(residual**2, axis=1))) < 0.5


def test_honeycomb_basis_is_not_mistaken_for_lattice_vectors():
    # Two sublattices (like Mo and S2 in MoS2): the shortest difference vectors are
    # bonds, which are not translations.
    rng = np.random.default_rng(1)
    a = 24.0
    u, v = np.array([0.0, a]), np.array([a * np.sqrt(3) / 2, a / 2])
    o = np.array([30.2, 40.6])
    bond = (u + v) / 3
    bright = _points(o, u, v, (500, 500))
    dim = _points(o + bond, u, v, (500, 500))
    peaks = np.vstack([dim, bright]) + rng.normal(0, 0.2, (len(dim) + len(bright), 2))
    image = np.zeros((500, 500))
    for p, level in ((bright, 10.0), (dim, 4.0)):
        iy, ix = np.round(p).astype(int).T
        image[iy, ix] = level
    out = run_operator("lattice_find", {"image": image, "peaks": peaks})
    _same_lattice(out["u"].data, out["v"].data, u, v)
    assert np.hypot(*out["u"].data) == pytest.approx(a, abs=0.02)
    _on_lattice(out["origin"].data, o, u, v)  # on the bright sublattice
    meta = out["lattice"].meta
    assert len(meta["basis"]) == 2
    offset = np.array(meta["basis"][1])
    _on_lattice(offset, bond, u, v)
    np.testing.assert_allclose(out["lattice"].data, peaks, atol=1.0)


def test_from_a_synthetic_image_through_peak_find_and_peak_opt(make_lattice):
    o, u, v = np.array([20.4, 17.8]), np.array([1.5, 18.0]), np.array([16.0, 8.5])
    image, _ = make_lattice((256, 256), o, u, v, sigma=2.5)
    image = image + np.random.default_rng(2).normal(0, 0.02, image.shape)
    peaks = run_operator("peak_find", {"image": image}, {"threshold": 0.5, "min_distance": 5})["peaks"]
    refined = run_operator("peak_opt", {"image": image, "peaks": peaks})["peaks"]
    out = run_operator("lattice_find", {"image": image, "peaks": refined})
    _same_lattice(out["u"].data, out["v"].data, u, v, atol=0.002)
    _on_lattice(out["origin"].data, o, u, v, atol=0.002)


def test_real_mos2_lattice(mos2_image):
    from scipy import ndimage

    image = mos2_image[:512, :512]
    blurred = ndimage.gaussian_filter(image, 2)
    peaks = run_operator("peak_find", {"image": blurred}, {"threshold": 0.25, "relative_to": "range"})["peaks"]
    refined = run_operator("peak_opt", {"image": blurred, "peaks": peaks})["peaks"]
    out = run_operator("lattice_find", {"image": blurred, "peaks": refined})
    u, v = out["u"].data, out["v"].data
    # MoS2: hexagonal, a = 0.316 nm; this image is calibrated at 0.0127 nm/px (~24.9 px)
    # with some scan distortion, so allow a few percent.
    for length in (np.hypot(*u), np.hypot(*v)):
        assert 22 < length < 25.5
    angle = np.degrees(np.arccos(u @ v / np.hypot(*u) / np.hypot(*v)))
    assert angle == pytest.approx(60, abs=4)
    meta = out["lattice"].meta
    assert meta["n_on_lattice"] > 0.8 * meta["n_peaks"]
    assert meta["rms_residual_px"] < 1.5


def test_not_a_lattice():
    peaks = np.random.default_rng(5).uniform(0, 300, (200, 2))
    with pytest.raises(RuntimeError, match="lattice"):
        run_operator("lattice_find", {"image": np.zeros((300, 300)), "peaks": peaks})
