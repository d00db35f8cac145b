"""background_fit: power-law EELS background A * E^-r, fitted in [start, stop)."""

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator


def window(eloss, start, stop):
    """Indices i1 <= i < i2 of channels with start <= E < stop (like exspy's isig[start:stop])."""
    i1 = int(np.searchsorted(eloss, start, side="left"))
    i2 = int(np.searchsorted(eloss, stop, side="left"))
    return i1, i2


def fit_loglog(eloss, spec, i1, i2):
    """Least squares of log(spec) = log(A) - r log(E) over the window (positive counts only)."""
    e, s = eloss[i1:i2], spec[i1:i2]
    ok = (e > 0) & (s > 0)
    if ok.sum() < 2:
        raise ValueError("the fit window needs at least two channels with positive energy and counts")
    slope, intercept = np.polyfit(np.log(e[ok]), np.log(s[ok]), 1)
    return float(np.exp(intercept)), float(-slope)


def fit_two_area(eloss, spec, i1, i2):
    """Egerton's two-area estimate of (A, r).

    The window is split at its middle channel x3; I1, I2 are trapezoid integrals over
    [x1, x3] and [x3, x2];
    r = 2 ln(I1 / I2) / ln(x2 / x1), A = (1 - r) I2 / (x2^(1-r) - x3^(1-r)).
    """
    i2 = min(i2, len(eloss) - 1)
    if (i2 - i1) % 2:
        i2 -= 1
    i3 = (i1 + i2) // 2
    if i3 - i1 < 1:
        raise ValueError("the fit window is too narrow for the two-area method")
    x1, x2, x3 = eloss[i1], eloss[i2], eloss[i3]
    s1 = np.trapezoid(spec[i1 : i3 + 1], eloss[i1 : i3 + 1])
    s2 = np.trapezoid(spec[i3 : i2 + 1], eloss[i3 : i2 + 1])
    if s1 <= 0 or s2 <= 0 or x1 <= 0:
        raise ValueError("the two-area method needs positive energies and counts in the window")
    r = 2 * np.log(s1 / s2) / np.log(x2 / x1)
    k = 1 - r
    a = k * s2 / (x2**k - x3**k)
    return float(a), float(r)


@operator
def background_fit(inputs, params):
    eloss = np.asarray(inputs["eloss"].data, dtype=np.float64)
    spec = np.asarray(inputs["spec"].data, dtype=np.float64)
    if eloss.shape != spec.shape or eloss.ndim != 1:
        raise ValueError(f"eloss {eloss.shape} and spec {spec.shape} must be 1D and the same length")
    start, stop = float(params["start"]), float(params["stop"])
    if not start < stop:
        raise ValueError(f"start ({start}) must be below stop ({stop})")
    i1, i2 = window(eloss, start, stop)
    method = params.get("method", "loglog")
    a, r = (fit_two_area if method == "two_area" else fit_loglog)(eloss, spec, i1, i2)
    e = eloss[i1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        background = a * e ** (-r)
    meta = {
        "A": a,
        "r": r,
        "method": method,
        "start": start,
        "stop": stop,
        "units": inputs["spec"].meta.get("units", "counts"),
    }
    return {
        "eloss": PortValue(e.copy(), {"units": inputs["eloss"].meta.get("units", "eV")}),
        "background": PortValue(background, meta),
    }
