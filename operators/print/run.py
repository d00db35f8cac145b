"""print: passthrough that logs a summary of what flows by."""

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator


def summary(data, meta):
    """One line describing ``data`` and ``meta``."""
    if isinstance(data, np.ndarray):
        text = f"array shape={data.shape} dtype={data.dtype}"
        if data.size and np.issubdtype(data.dtype, np.number):
            text += f" min={np.nanmin(data):.6g} max={np.nanmax(data):.6g} mean={np.nanmean(data):.6g}"
    elif isinstance(data, (bytes, bytearray, memoryview)):
        text = f"bytes len={len(data)}"
    else:
        text = repr(data)[:200]
    return f"{text} meta={sorted(meta)}"


@operator
def print_(inputs, params):
    value = inputs["data"]
    prefix = f"[{params['label']}] " if params.get("label") else ""
    print(prefix + summary(value.data, value.meta), flush=True)
    return {"data": PortValue(value.data, dict(value.meta))}
