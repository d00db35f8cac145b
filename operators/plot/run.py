"""plot: stack x and y into a 2 x N line layer (meta kind=plot)."""

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator


@operator
def plot(inputs, params):
    x = np.asarray(inputs["x"].data, dtype=np.float64).ravel()
    y = np.asarray(inputs["y"].data, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x ({x.size}) and y ({y.size}) differ in length")
    meta = {key: params[key] for key in ("z", "label", "color") if params.get(key) not in (None, "")}
    meta["kind"] = "plot"
    for key, port in (("x_units", "x"), ("y_units", "y")):
        if inputs[port].meta.get("units"):
            meta[key] = inputs[port].meta["units"]
    return {"out": PortValue(np.vstack([x, y]), meta)}
