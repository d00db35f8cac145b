"""scatter: N x 2 (y, x) points as a display layer (meta kind=scatter)."""

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator


@operator
def scatter(inputs, params):
    points = np.asarray(inputs["in"].data, dtype=np.float64)
    if points.size % 2:
        raise ValueError(f"scatter needs N x 2 rows (y, x), got shape {points.shape}")
    meta = {key: params[key] for key in ("z", "color", "marker", "size", "label") if params.get(key) not in (None, "")}
    meta.update(kind="scatter", convention="rows (y, x)")
    return {"out": PortValue(points.reshape(-1, 2), meta)}
