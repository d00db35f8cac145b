"""peak_find: skimage.feature.peak_local_max; rows (y, x), strongest first."""

import numpy as np
from skimage.feature import peak_local_max

from oremda_lab.worker.sdk import PortValue, operator


@operator
def peak_find(inputs, params):
    image = np.asarray(inputs["image"].data)
    if image.ndim != 2:
        raise ValueError(f"peak_find needs a 2D image, got shape {image.shape}")
    threshold = float(params["threshold"])
    kwargs = {"min_distance": int(params["min_distance"]), "exclude_border": bool(params.get("exclude_border", True))}
    if params.get("relative_to", "max") == "range":
        lo, hi = float(image.min()), float(image.max())
        kwargs["threshold_abs"] = lo + threshold * (hi - lo)
    else:
        kwargs["threshold_rel"] = threshold
    peaks = peak_local_max(image, **kwargs).astype(np.int64).reshape(-1, 2)
    meta = {"convention": "rows (y, x) in pixels", "count": int(len(peaks)), "image_shape": list(image.shape)}
    for key in ("pixel_size", "pixel_unit"):
        if key in inputs["image"].meta:
            meta[key] = inputs["image"].meta[key]
    return {"peaks": PortValue(peaks, meta)}
