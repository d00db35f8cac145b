import numpy as np
import pytest

from oremda_lab.testing import run_operator


def test_subtracts_on_the_window_with_matching_axes():
    eloss = np.arange(100.0, 200.0, 0.5)
    spec = np.full_like(eloss, 10.0)
    e_bg = eloss[eloss >= 120]
    bg = np.full_like(e_bg, 3.0)
    out = run_operator("subtract", {"eloss": eloss, "spec": spec, "eloss_bg": e_bg, "background": bg},
                       {"start": 130, "stop": 150})  # fmt: skip
    np.testing.assert_array_equal(out["eloss"].data, eloss[(eloss >= 130) & (eloss < 150)])
    np.testing.assert_allclose(out["spec"].data, 7.0)
    assert not out["spec"].meta["interpolated"]


def test_interpolates_a_background_on_another_axis():
    eloss = np.linspace(100, 200, 201)
    e_bg = np.linspace(90, 210, 50)
    out = run_operator("subtract", {"eloss": eloss, "spec": 2 * eloss, "eloss_bg": e_bg, "background": e_bg},
                       {"start": 100, "stop": 200})  # fmt: skip
    np.testing.assert_allclose(out["spec"].data, out["eloss"].data)
    assert out["spec"].meta["interpolated"]


def test_window_outside_the_background():
    e = np.linspace(100, 200, 11)
    with pytest.raises(RuntimeError, match="does not cover"):
        run_operator(
            "subtract", {"eloss": e, "spec": e, "eloss_bg": e + 500, "background": e}, {"start": 100, "stop": 200}
        )
