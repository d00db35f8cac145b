"""histograms: numpy.histogram of the finite values -> [centres, counts] layer."""

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator


@operator
def histograms(inputs, params):
    data = np.asarray(inputs["in"].data, dtype=np.float64)
    if params.get("magnitude", False) and data.ndim == 2:
        data = np.sqrt((data**2).sum(axis=1))
    values = data[np.isfinite(data)].ravel()
    counts, edges = np.histogram(values, bins=int(params["bins"]))
    centres = (edges[:-1] + edges[1:]) / 2
    meta = {key: params[key] for key in ("z", "color", "label", "bins") if params.get(key) not in (None, "")}
    meta.update(kind="histograms", edges=edges.tolist(), n=int(values.size))
    return {"out": PortValue(np.vstack([centres, counts.astype(np.float64)]), meta)}
