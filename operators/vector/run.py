"""vector: rows (y, x, dy, dx) from origins and directions (broadcast)."""

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator


@operator
def vector(inputs, params):
    origin = np.asarray(inputs["origin"].data, dtype=np.float64).reshape(-1, 2)
    direction = np.asarray(inputs["direction"].data, dtype=np.float64).reshape(-1, 2) * float(params.get("scale", 1))
    try:
        origin, direction = np.broadcast_arrays(origin, direction)
    except ValueError as e:
        raise ValueError(f"{len(origin)} origins and {len(direction)} directions do not broadcast") from e
    meta = {key: params[key] for key in ("z", "color", "label") if params.get(key) not in (None, "")}
    meta.update(kind="vector", convention="rows (y, x, dy, dx)")
    return {"out": PortValue(np.hstack([origin, direction]), meta)}
