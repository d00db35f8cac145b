"""picture: a 2D image as a display layer (meta kind=picture); scaling is the display's."""

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator


@operator
def picture(inputs, params):
    image = np.asarray(inputs["in"].data)
    if image.ndim != 2:
        raise ValueError(f"picture needs a 2D image, got shape {image.shape}")
    finite = image[np.isfinite(image)] if np.issubdtype(image.dtype, np.floating) else image
    meta = {
        key: params[key] for key in ("z", "color", "label", "normalize", "cmap") if params.get(key) not in (None, "")
    }
    meta.update(
        kind="picture", min=float(finite.min()) if finite.size else 0.0, max=float(finite.max()) if finite.size else 0.0
    )
    for key in ("pixel_size", "pixel_unit", "offset"):
        if key in inputs["in"].meta:
            meta[key] = inputs["in"].meta[key]
    return {"out": PortValue(image, meta)}
