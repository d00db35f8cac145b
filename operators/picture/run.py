"""picture: a 2D image as a display layer (meta kind=picture); scaling is the display's."""

import warnings

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator


@operator
def picture(inputs, params):
    image = np.asarray(inputs["in"].data)
    if image.ndim != 2:
        raise ValueError(f"picture needs a 2D image, got shape {image.shape}")
    meta = {
        key: params[key] for key in ("z", "color", "label", "normalize", "cmap") if params.get(key) not in (None, "")
    }
    with warnings.catch_warnings():  # nanmin/nanmax skip NaN without copying the image
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = (np.nanmin(image), np.nanmax(image)) if image.size else (0.0, 0.0)
    if not np.isfinite([low, high]).all():  # inf or all-NaN: the slow path over finite values
        finite = image[np.isfinite(image)]
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
    meta.update(kind="picture", min=float(low), max=float(high))
    for key in ("pixel_size", "pixel_unit", "offset"):
        if key in inputs["in"].meta:
            meta[key] = inputs["in"].meta[key]
    return {"out": PortValue(image, meta)}
