"""virtual_detector against lattice-point counts in a circle and a per-pixel loop (no MPI, no LiberTEM).

test_4dstem.py compares it with LiberTEM on the simulated MoS2 scan (``mpi`` tier).
"""

import numpy as np
import pytest

from oremda_lab.testing import run_operator

# Integer points (a, b) with a^2 + b^2 <= R^2 (Gauss's circle problem, OEIS A000328), R = 0..10.
CIRCLE_POINTS = [1, 5, 13, 29, 49, 81, 113, 149, 197, 253, 317]


@pytest.mark.parametrize(("inner", "outer"), [(0, 5), (3, 5), (6, 10), (0, 10)])
def test_a_uniform_frame_counts_the_pixels_of_the_ring(inner, outer):
    frame = np.ones((1, 2, 32, 32), np.float32)
    out = run_operator("virtual_detector", {"data": frame}, {"inner_radius": inner, "outer_radius": outer})["image"]
    # inner < r <= outer; a disk (inner 0) includes r = 0.
    expected = CIRCLE_POINTS[outer] - (CIRCLE_POINTS[inner] if inner else 0)
    np.testing.assert_array_equal(out.data, np.full((1, 2), expected))
    assert out.meta["detector"]["pixels"] == expected


def _ring_sum(frame, inner, outer, cy, cx):
    total = 0.0
    for y in range(frame.shape[0]):
        for x in range(frame.shape[1]):
            r2 = (y - cy) ** 2 + (x - cx) ** 2
            if r2 <= outer**2 and (inner == 0 or r2 > inner**2):
                total += float(frame[y, x])
    return total


@pytest.mark.parametrize("dtype", [np.uint16, np.float64])
def test_equals_a_per_pixel_loop_across_chunks(dtype):
    # 300 patterns: more than one 256-pattern block of the operator's matrix product.
    data = np.random.default_rng(3).integers(0, 1000, (20, 15, 24, 24)).astype(dtype)
    params = {"inner_radius": 2.5, "outer_radius": 7.2, "center": [10, 13]}
    out = run_operator("virtual_detector", {"data": data}, params)["image"]
    expected = np.array([[_ring_sum(data[i, j], 2.5, 7.2, 10, 13) for j in range(15)] for i in range(20)])
    assert out.data.shape == (20, 15)
    assert out.data.dtype == (np.float64 if dtype == np.float64 else np.float32)
    np.testing.assert_allclose(out.data, expected, rtol=1e-6)


def test_default_centre_is_the_middle_pixel():
    frame = np.zeros((1, 1, 9, 10))
    frame[0, 0, 4, 5] = 7.0  # shape // 2
    out = run_operator("virtual_detector", {"data": frame}, {"inner_radius": 0, "outer_radius": 0.5})["image"]
    assert out.data[0, 0] == 7.0 and out.meta["detector"]["pixels"] == 1


def test_outer_below_inner_is_an_error():
    with pytest.raises(RuntimeError, match="smaller than inner_radius"):
        run_operator("virtual_detector", {"data": np.zeros((1, 1, 8, 8))}, {"inner_radius": 4, "outer_radius": 3})
