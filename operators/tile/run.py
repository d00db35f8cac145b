"""tile: numpy.tile over the last two axes."""

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator


@operator
def tile(inputs, params):
    image = inputs["image"]
    reps = (1,) * (image.data.ndim - 2) + (int(params["n_y"]), int(params["n_x"]))
    return {"image": PortValue(np.tile(image.data, reps), {k: v for k, v in image.meta.items() if k != "axes"})}
