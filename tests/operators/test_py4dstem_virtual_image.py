"""py4dstem_virtual_image: py4DSTEM's virtual detector, in its own numpy<2 environment.

The truth is an explicit mask sum in numpy with py4DSTEM's boundaries (disk r < R, ring
ri < r < ro, both strict), and this library's virtual_detector (LiberTEM's convention,
ri < r <= ro) run in the test process: on integer pixel offsets r^2 is an integer, so
the two agree once the outer radius sits between two attainable r^2 values.
"""

import numpy as np
import pytest
from _isolated import run_isolated
from test_4dstem import DETECTOR, mos2_4dstem

from oremda_lab.testing import run_operator

pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def mos2():
    return mos2_4dstem()[0]


def strict_mask(shape, inner, outer, center):
    y, x = np.ogrid[: shape[0], : shape[1]]
    r2 = (y - center[0]) ** 2 + (x - center[1]) ** 2
    return (r2 < outer**2) & ((r2 > inner**2) if inner > 0 else True)


@pytest.mark.parametrize(
    "inner, outer, center", [(0, 5, None), (6, 20, None), (9.5, 30, None), (4, 12, [30, 35])], ids=str
)
def test_equals_an_explicit_mask_sum(stack_engine, mos2, inner, outer, center):
    params = {"inner_radius": inner, "outer_radius": outer, **({"center": center} if center else {})}
    out, env = run_isolated(stack_engine, "py4dstem_virtual_image", {"data": mos2}, params)
    mask = strict_mask(mos2.shape[2:], inner, outer, center or (DETECTOR // 2, DETECTOR // 2))
    expected = np.einsum("abij,ij->ab", mos2.astype(np.float64), mask)
    image = out["image"]
    assert image.data.shape == (16, 16) and image.data.dtype == np.float64
    np.testing.assert_allclose(image.data, expected, rtol=1e-12)
    assert image.meta["detector"]["pixels"] == mask.sum()
    assert image.meta["detector"]["mode"] == ("circle" if inner == 0 else "annulus")
    assert env["packages"]["py4dstem"] == "0.14.18" and env["packages"]["numpy"].startswith("1.")


def test_strict_outer_boundary_against_virtual_detector(stack_engine, mos2):
    """py4DSTEM's r < 20 is virtual_detector's r <= sqrt(399.5): r^2 = 400 is out of both."""
    ours = run_operator("virtual_detector", {"data": mos2}, {"inner_radius": 6, "outer_radius": np.sqrt(399.5)})
    theirs, _ = run_isolated(
        stack_engine, "py4dstem_virtual_image", {"data": mos2}, {"inner_radius": 6, "outer_radius": 20}
    )
    np.testing.assert_allclose(theirs["image"].data, ours["image"].data, rtol=1e-5)
    with_edge = run_operator("virtual_detector", {"data": mos2}, {"inner_radius": 6, "outer_radius": 20})
    assert (with_edge["image"].data > theirs["image"].data).all()  # the r = 20 pixels add counts


def test_single_pixels_on_the_boundaries(stack_engine):
    frame = np.zeros((1, 2, 21, 21), np.float32)
    frame[..., 10, 10] = 1  # r = 0
    frame[..., 10, 13] = 10  # r = 3 exactly
    frame[..., 10, 15] = 100  # r = 5 exactly
    frame[..., 14, 10] = 1000  # r = 4
    value = lambda ri, ro: run_isolated(  # noqa: E731
        stack_engine, "py4dstem_virtual_image", {"data": frame}, {"inner_radius": ri, "outer_radius": ro}
    )[0]["image"].data[0, 0]
    assert value(3, 5) == 1000  # both r = 3 and r = 5 are out
    assert value(0, 3) == 1  # a disk keeps r = 0 but not r = 3
    assert value(0, 5.01) == 1111


def test_bad_radii_are_a_node_error(stack_engine, mos2):
    with pytest.raises(Exception, match="must exceed inner_radius"):
        run_isolated(stack_engine, "py4dstem_virtual_image", {"data": mos2}, {"inner_radius": 9, "outer_radius": 9})


def test_runs_under_a_jupyter_kernels_matplotlib_backend(tmp_path, monkeypatch, mos2):
    """A kernel exports MPLBACKEND=module://matplotlib_inline...; py4DSTEM's env lacks that module."""
    from oremda_lab.engine import Engine

    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    with Engine("local", tmp_path, start_timeout=900) as fresh:
        out, _ = run_isolated(fresh, "py4dstem_virtual_image", {"data": mos2[:2, :2]}, {"outer_radius": 5})
    assert out["image"].data.shape == (2, 2)


@pytest.mark.parametrize(
    "inner, outer, error",
    [(7, 7, "outer_radius 7.0 must exceed inner_radius 7.0"), (7, 5, "outer_radius 5.0 is smaller than inner_radius")],
)
def test_radii_are_checked_by_the_sdk(stack_engine, mos2, inner, outer, error):
    """py4DSTEM cannot draw a ring of no width: refused before it is asked (sdk.stem_detector)."""
    with pytest.raises(Exception, match=error):
        run_isolated(
            stack_engine, "py4dstem_virtual_image", {"data": mos2}, {"inner_radius": inner, "outer_radius": outer}
        )
