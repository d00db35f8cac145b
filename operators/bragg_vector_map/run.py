"""Bragg vector map: disk detection in every diffraction pattern, accumulated."""

import os

import numpy as np
from scipy import fft, ndimage

from oremda_lab.worker.sdk import PortValue, data_path, operator

_CHUNK = 128  # patterns per vectorized step


def disk_template(shape, radius):
    """A unit-sum disk centred on pixel (0, 0), wrapped, for FFT cross-correlation."""
    y = np.fft.fftfreq(shape[0], 1 / shape[0])[:, None]
    x = np.fft.fftfreq(shape[1], 1 / shape[1])[None, :]
    disk = (y**2 + x**2 <= radius**2).astype(np.float32)
    return disk / disk.sum()


def find_disks(frames, template_radius, threshold, min_distance, max_peaks, edge):
    """Disk positions and strengths in each of ``frames`` (n, det_y, det_x).

    Returns flat detector indices and strengths of all disks found, as two 1D arrays.
    """
    frames = np.asarray(frames, np.float32)
    shape = frames.shape[-2:]
    if template_radius > 0:
        kernel = fft.rfft2(disk_template(shape, template_radius))
        corr = fft.irfft2(fft.rfft2(frames, workers=1) * np.conj(kernel), s=shape, workers=1)
    else:
        corr = frames
    size = 2 * int(min_distance) + 1
    local_max = corr == ndimage.maximum_filter(corr, size=(1, size, size), mode="nearest")
    strongest = corr.reshape(len(corr), -1).max(axis=1)
    keep = local_max & (corr >= threshold * strongest[:, None, None]) & (corr > 0)
    if edge > 0:
        keep[:, :edge] = keep[:, -edge:] = False
        keep[:, :, :edge] = keep[:, :, -edge:] = False
    values = np.where(keep, corr, -np.inf).reshape(len(corr), -1)
    if max_peaks < values.shape[1]:
        top = np.argpartition(values, -max_peaks, axis=1)[:, -max_peaks:]
        chosen = np.take_along_axis(values, top, axis=1)
        found = np.isfinite(chosen)
        return top[found], chosen[found]
    frame, flat = np.nonzero(np.isfinite(values))
    return flat, values[frame, flat]


def bragg_map(data, template_radius=4, threshold=0.05, min_distance=3, max_peaks=64, edge=2):
    """The Bragg vector map of ``data`` (..., det_y, det_x)."""
    shape = data.shape[-2:]
    frames = data.reshape(-1, *shape)
    total = np.zeros(shape[0] * shape[1], np.float64)
    for start in range(0, len(frames), _CHUNK):
        flat, strength = find_disks(frames[start : start + _CHUNK], template_radius, threshold,
                                    min_distance, max_peaks, edge)  # fmt: skip
        total += np.bincount(flat, weights=strength, minlength=total.size)
    return total.reshape(shape)


def _my_rows(n):
    # Upstream-style parallel runs (no split input): each rank reads its own scan rows.
    index, size = int(os.environ.get("OREMDA_PARALLEL_INDEX", 0)), int(os.environ.get("OREMDA_PARALLEL_SIZE", 1))
    base, extra = divmod(n, size)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


@operator
def bragg_vector_map(inputs, params):
    port = inputs.get("data")
    if port is not None and port.data is not None:
        data, meta = port.data, dict(port.meta)
    elif params.get("filename"):
        whole = np.load(data_path(params["filename"]), mmap_mode="r")
        data, meta = whole[slice(*_my_rows(len(whole)))], {"filename": params["filename"]}
    else:
        raise ValueError("give 4D-STEM data on the 'data' input or a .npy file in 'filename'")
    if data.ndim < 3:
        raise ValueError(f"expected 4D-STEM data (..., det_y, det_x), got shape {data.shape}")
    out = bragg_map(data, float(params["template_radius"]), float(params["threshold"]), int(params["min_distance"]),
                    int(params["max_peaks"]), int(params["edge"]))  # fmt: skip
    return {"out": PortValue(out, meta)}
