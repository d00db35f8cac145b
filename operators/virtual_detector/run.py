"""Virtual detector: a ring (or disk) mask summed over each diffraction pattern."""

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator

# Frames per matrix product: big enough for BLAS, small enough to stay in cache.
_CHUNK = 256


def ring_mask(shape, inner_radius, outer_radius, center=None, dtype=np.float32):
    """1 where inner_radius < r <= outer_radius (r <= outer_radius when inner_radius == 0)."""
    cy, cx = center if center is not None else (shape[0] // 2, shape[1] // 2)
    y, x = np.ogrid[: shape[0], : shape[1]]
    r2 = (y - cy) ** 2 + (x - cx) ** 2
    mask = r2 <= outer_radius**2
    if inner_radius > 0:
        mask &= r2 > inner_radius**2
    return mask.astype(dtype)


def virtual_image(data, mask):
    """Sum each frame of ``data`` (..., det_y, det_x) weighted by ``mask``."""
    frames = data.reshape(-1, mask.size)
    dtype = np.float64 if data.dtype == np.float64 else np.float32
    weights = mask.reshape(-1).astype(dtype)
    out = np.empty(frames.shape[0], dtype)
    for start in range(0, frames.shape[0], _CHUNK):
        block = frames[start : start + _CHUNK]
        out[start : start + _CHUNK] = block.astype(dtype, copy=False) @ weights
    return out.reshape(data.shape[:-2])


@operator
def virtual_detector(inputs, params):
    data = inputs["data"].data
    if data.ndim < 3:
        raise ValueError(f"expected 4D-STEM data (..., det_y, det_x), got shape {data.shape}")
    inner, outer = float(params.get("inner_radius", 0)), float(params["outer_radius"])
    if outer < inner:
        raise ValueError(f"outer_radius {outer} is smaller than inner_radius {inner}")
    mask = ring_mask(data.shape[-2:], inner, outer, params.get("center"))
    meta = {
        **inputs["data"].meta,
        "detector": {"inner_radius": inner, "outer_radius": outer, "pixels": int(mask.sum())},
    }
    return {"image": PortValue(virtual_image(data, mask), meta)}
