"""fft2d: numpy.fft.fft2 -> (real, imag); zero frequency at [0, 0] unless shift is set."""

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator


@operator
def fft2d(inputs, params):
    image = inputs["in"]
    f = np.fft.fft2(image.data, axes=(-2, -1))
    if params.get("shift", False):
        f = np.fft.fftshift(f, axes=(-2, -1))
    meta = {"shifted": bool(params.get("shift", False)), "source_shape": list(image.data.shape)}
    return {
        "real": PortValue(np.ascontiguousarray(f.real), meta),
        "imag": PortValue(np.ascontiguousarray(f.imag), meta),
    }
