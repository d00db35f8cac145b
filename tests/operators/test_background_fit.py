"""background_fit against exspy's PowerLaw background removal on a real EELS spectrum."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from oremda_lab.testing import run_operator

REFERENCE = Path(__file__).with_name("_exspy_reference.py")


@pytest.fixture(scope="module")
def spectrum(coreloss_msa):
    return run_operator("ncem_reader_eels", params={"filename": coreloss_msa.name}, data_dir=coreloss_msa.parent)


@pytest.fixture(scope="module")
def exspy_reference(peer_python, coreloss_msa):
    done = subprocess.run([str(peer_python), str(REFERENCE), str(coreloss_msa), "460", "520"],
                          capture_output=True, text=True, timeout=240)  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"exspy reference failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout[done.stdout.index("{") :])


@pytest.mark.parametrize(("method", "peer"), [("loglog", "fit"), ("two_area", "fast")])
def test_agrees_with_exspy_within_one_percent(spectrum, exspy_reference, method, peer):
    """loglog vs exspy's least-squares fit; two_area vs exspy's two-area estimate (fast=True)."""
    params = {"start": 460, "stop": 520, "method": method}
    out = run_operator("background_fit", {"eloss": spectrum["eloss"], "spec": spectrum["spec"]}, params)
    np.testing.assert_allclose(out["eloss"].data, exspy_reference["eloss"])
    reference = np.array(exspy_reference[peer]["background"])
    # Over the whole extrapolated range (460 eV .. 769.6 eV, across the O-K and Mn-L edges).
    np.testing.assert_allclose(out["background"].data, reference, rtol=0.01)
    assert out["background"].meta["r"] == pytest.approx(exspy_reference[peer]["r"], rel=0.01)


def test_exact_power_law_is_recovered():
    eloss = np.linspace(200, 600, 2001)
    spec = 3.0e9 * eloss**-2.7
    for method in ("loglog", "two_area"):
        out = run_operator(
            "background_fit", {"eloss": eloss, "spec": spec}, {"start": 250, "stop": 300, "method": method}
        )
        assert out["background"].meta["r"] == pytest.approx(2.7, rel=1e-3)  # two_area: trapezoid integrals
        np.testing.assert_allclose(out["background"].data, spec[eloss >= 250], rtol=1e-3)


def test_real_spectrum_after_subtraction_is_flat_before_the_edge(spectrum):
    fit = run_operator(
        "background_fit", {"eloss": spectrum["eloss"], "spec": spectrum["spec"]}, {"start": 460, "stop": 520}
    )
    inputs = {
        "eloss": spectrum["eloss"],
        "spec": spectrum["spec"],
        "eloss_bg": fit["eloss"],
        "background": fit["background"],
    }
    out = run_operator("subtract", inputs, {"start": 460, "stop": 700})
    e, s = out["eloss"].data, out["spec"].data
    pre, post = s[(e > 470) & (e < 520)], s[(e > 540) & (e < 560)]
    assert abs(pre.mean()) < 0.02 * spectrum["spec"].data[(spectrum["eloss"].data > 470)].max()
    assert post.mean() > 10 * abs(pre.mean())  # the O-K edge at 532 eV stands out


def test_bad_window():
    eloss = np.linspace(100, 200, 101)
    with pytest.raises(RuntimeError, match="below stop"):
        run_operator("background_fit", {"eloss": eloss, "spec": eloss}, {"start": 150, "stop": 120})
