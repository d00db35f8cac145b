"""gaussian_blur: scipy.ndimage.gaussian_filter with a scalar or per-axis sigma."""

import numpy as np
from scipy import ndimage

from oremda_lab.worker.sdk import PortValue, operator, output_array


@operator
def gaussian_blur(inputs, params):
    image = inputs["image"]
    data = image.data if np.issubdtype(image.data.dtype, np.floating) else image.data.astype(np.float32)
    sigma = params["sigma"]
    if isinstance(sigma, (list, tuple)) and len(sigma) != data.ndim:
        raise ValueError(f"sigma has {len(sigma)} values for a {data.ndim}-D image")
    blurred = output_array(data.shape, data.dtype)  # written in place in shared memory
    ndimage.gaussian_filter(
        data, sigma, output=blurred, mode=params.get("mode", "reflect"), truncate=params.get("truncate", 4.0)
    )
    return {"image": PortValue(blurred, dict(image.meta))}
