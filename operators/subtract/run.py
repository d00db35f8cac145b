"""subtract: spec - background on [start, stop), background interpolated onto eloss."""

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator


@operator
def subtract(inputs, params):
    eloss = np.asarray(inputs["eloss"].data, dtype=np.float64)
    spec = np.asarray(inputs["spec"].data, dtype=np.float64)
    e_bg = np.asarray(inputs["eloss_bg"].data, dtype=np.float64)
    bg = np.asarray(inputs["background"].data, dtype=np.float64)
    if eloss.shape != spec.shape or e_bg.shape != bg.shape:
        raise ValueError("eloss/spec and eloss_bg/background must be pairs of equal length")
    start, stop = float(params["start"]), float(params["stop"])
    keep = (eloss >= start) & (eloss < stop)
    # Outside the background's own range there is nothing to subtract: refuse rather than extrapolate.
    covered = keep & (eloss >= e_bg.min() - 1e-9) & (eloss <= e_bg.max() + 1e-9)
    if not covered.any():
        raise ValueError(f"the background ({e_bg.min()}..{e_bg.max()} eV) does not cover {start}..{stop} eV")
    e = eloss[covered]
    same = len(e_bg) >= len(e) and np.array_equal(e_bg[np.searchsorted(e_bg, e[0]) :][: len(e)], e)
    b = bg[np.searchsorted(e_bg, e[0]) :][: len(e)] if same else np.interp(e, e_bg, bg)
    meta = {"start": start, "stop": stop, "units": inputs["spec"].meta.get("units", "counts"), "interpolated": not same}
    return {
        "eloss": PortValue(e, {"units": inputs["eloss"].meta.get("units", "eV")}),
        "spec": PortValue(spec[covered] - b, meta),
    }
