"""libertem_ring: LiberTEM's ApplyMasksUDF in its own environment.

Truths: this library's virtual_detector (numpy, in the test process; the same ring
convention ri < r <= ro), an explicit mask sum, and for the antialiased masks the
analytic ring area pi (ro^2 - ri^2).
"""

import numpy as np
import pytest
from _isolated import run_isolated
from test_4dstem import mos2_4dstem

from oremda_lab.testing import run_operator

pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def mos2():
    return mos2_4dstem()[0]


@pytest.mark.parametrize("inner, outer", [(0, 6), (6, 20), (9.5, 30)])
def test_equals_virtual_detector(stack_engine, mos2, inner, outer):
    params = {"inner_radius": inner, "outer_radius": outer}
    theirs, env = run_isolated(stack_engine, "libertem_ring", {"data": mos2}, params)
    ours = run_operator("virtual_detector", {"data": mos2}, params)["image"]
    np.testing.assert_allclose(theirs["image"].data, ours.data, rtol=1e-5)
    assert theirs["image"].data.dtype == np.float32
    assert theirs["image"].meta["detector"]["weight"] == ours.meta["detector"]["pixels"]
    assert env["packages"]["libertem"].startswith("0.16.") and env["packages"]["numpy"].startswith("2.")


def test_off_centre_ring_equals_a_mask_sum(stack_engine, mos2):
    params = {"inner_radius": 3, "outer_radius": 10, "center": [20, 41]}
    theirs, _ = run_isolated(stack_engine, "libertem_ring", {"data": mos2}, params)
    y, x = np.ogrid[:64, :64]
    r2 = (y - 20) ** 2 + (x - 41) ** 2
    expected = np.einsum("abij,ij->ab", mos2.astype(np.float64), (r2 > 9) & (r2 <= 100))
    np.testing.assert_allclose(theirs["image"].data, expected, rtol=1e-5)


@pytest.mark.parametrize("inner, outer", [(0, 12.3), (5.5, 20.25)])
def test_antialiased_weight_is_the_ring_area(stack_engine, inner, outer):
    flat = np.ones((2, 3, 64, 64), np.float32)
    params = {"inner_radius": inner, "outer_radius": outer, "antialiased": True}
    out, _ = run_isolated(stack_engine, "libertem_ring", {"data": flat}, params)
    area = np.pi * (outer**2 - inner**2)
    np.testing.assert_allclose(out["image"].data, area, rtol=5e-3)
    assert out["image"].meta["detector"]["weight"] == pytest.approx(area, rel=5e-3)


def test_radii_are_checked_by_the_sdk(stack_engine, mos2):
    """A ring of no width is an empty mask (zeros); outer below inner is refused (sdk.stem_detector)."""
    out, _ = run_isolated(stack_engine, "libertem_ring", {"data": mos2}, {"inner_radius": 7, "outer_radius": 7})
    np.testing.assert_array_equal(out["image"].data, np.zeros(mos2.shape[:2]))
    with pytest.raises(Exception, match="outer_radius 5.0 is smaller than inner_radius 7.0"):
        run_isolated(stack_engine, "libertem_ring", {"data": mos2}, {"inner_radius": 7, "outer_radius": 5})
