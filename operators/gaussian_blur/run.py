import numpy as np
from scipy import ndimage

from oremda_lab.worker.sdk import PortValue, operator


@operator
def gaussian_blur(inputs, params):
    image = inputs["image"]
    data = image.data if np.issubdtype(image.data.dtype, np.floating) else image.data.astype(np.float32)
    return {"image": PortValue(ndimage.gaussian_filter(data, params["sigma"]), dict(image.meta))}
