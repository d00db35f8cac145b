"""diffractogram: log1p of the centred power spectrum, optionally windowed."""

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator


@operator
def diffractogram(inputs, params):
    image = inputs["image"]
    data = np.asarray(image.data, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"diffractogram needs a 2D image, got shape {data.shape}")
    if params.get("subtract_mean", False):
        data = data - data.mean()
    if params.get("window", "none") == "hann":
        data = data * np.outer(np.hanning(data.shape[0]), np.hanning(data.shape[1]))
    power = np.abs(np.fft.fftshift(np.fft.fft2(data))) ** 2
    meta = {"window": params.get("window", "none")}
    size = image.meta.get("pixel_size")
    if size and len(size) == 2:
        units = image.meta.get("pixel_unit", ["", ""])
        meta["pixel_size"] = [1.0 / (n * s) if s else None for n, s in zip(data.shape, size, strict=True)]
        meta["pixel_unit"] = [f"1/{u}" if u else "" for u in units]
    return {"diffractogram": PortValue(np.log1p(power), meta)}
