"""scale: the input times ``factor`` (the third-party image template's example)."""

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator


@operator
def scale(inputs, params):
    """Multiply the ``image`` input by ``factor`` (operator.json describes the ports and params)."""
    image = inputs["image"]
    return {"image": PortValue(np.multiply(image.data, params["factor"], dtype=np.float64), dict(image.meta))}
