"""difference: a - b (integer inputs are promoted to float64, so negatives survive)."""

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator


@operator
def difference(inputs, params):
    a, b = inputs["a"], inputs["b"]
    left, right = np.asarray(a.data), np.asarray(b.data)
    if not (np.issubdtype(left.dtype, np.inexact) or np.issubdtype(right.dtype, np.inexact)):
        left = left.astype(np.float64)
    try:
        diff = np.subtract(left, right)
    except ValueError as e:
        raise ValueError(f"difference: shapes {left.shape} and {right.shape} do not broadcast") from e
    return {"diff": PortValue(diff, dict(a.meta))}
