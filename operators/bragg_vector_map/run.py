"""Bragg vector map: disk detection in every diffraction pattern, accumulated."""

import os

import numpy as np
from scipy import fft, ndimage

from oremda_lab.dataplane import lazy
from oremda_lab.worker.sdk import PortValue, as_port_value, cancelled, data_root, operator, report_progress

_CHUNK = 128  # patterns per vectorized step


def disk_template(shape, radius):
    """A unit-sum disk centred on pixel (0, 0), wrapped, for FFT cross-correlation."""
    y = np.fft.fftfreq(shape[0], 1 / shape[0])[:, None]
    x = np.fft.fftfreq(shape[1], 1 / shape[1])[None, :]
    disk = (y**2 + x**2 <= radius**2).astype(np.float32)
    return disk / disk.sum()


def find_disks(frames, template_radius, threshold, min_distance, max_peaks, edge, relative_to=1):
    """Disk positions and strengths in each of ``frames`` (n, det_y, det_x).

    A disk is a local maximum of the template correlation (the largest value within
    ``min_distance`` pixels) at least ``threshold`` times the pattern's
    ``relative_to``-th strongest maximum (0: the strongest, normally the zero beam;
    1: the strongest Bragg disk, since weak scatterers' disks are ~1e-3 of the zero
    beam). Returns flat detector indices and strengths of all disks, as 1D arrays.
    """
    frames = np.asarray(frames, np.float32)
    shape = frames.shape[-2:]
    if template_radius > 0:
        kernel = fft.rfft2(disk_template(shape, template_radius))
        corr = fft.irfft2(fft.rfft2(frames, workers=1) * np.conj(kernel), s=shape, workers=1)
    else:
        corr = frames
    keep = (corr == ndimage.maximum_filter(corr, size=(1, 3, 3), mode="nearest")) & (corr > 0)
    if edge > 0:
        keep[:, :edge] = keep[:, -edge:] = False
        keep[:, :, :edge] = keep[:, :, -edge:] = False
    values = np.where(keep, corr, -np.inf).reshape(len(corr), -1)
    count = min(max_peaks, values.shape[1])
    top = np.argpartition(values, -count, axis=1)[:, -count:]
    strength = np.take_along_axis(values, top, axis=1)
    order = np.argsort(-strength, axis=1)
    top, strength = np.take_along_axis(top, order, axis=1), np.take_along_axis(strength, order, axis=1)
    # A maximum closer than min_distance to a stronger one is part of it (a plateau, a
    # ring artefact, the slope of the zero beam's correlation).
    y, x = (v.astype(np.int32) for v in np.divmod(top, shape[1]))
    near = (y[:, :, None] - y[:, None, :]) ** 2 + (x[:, :, None] - x[:, None, :]) ** 2 < min_distance**2
    stronger = np.tri(count, k=-1, dtype=bool)[None] & np.isfinite(strength)[:, None, :]
    strength = np.where((near & stronger).any(axis=2), -np.inf, strength)
    order = np.argsort(-strength, axis=1, kind="stable")
    top, strength = np.take_along_axis(top, order, axis=1), np.take_along_axis(strength, order, axis=1)
    reference = strength[:, min(relative_to, count - 1)]
    found = np.isfinite(strength) & (
        strength >= threshold * np.where(np.isfinite(reference), reference, np.inf)[:, None]
    )
    found[:, : relative_to + 1] &= np.isfinite(strength[:, : relative_to + 1])  # the reference peaks themselves
    return top[found], strength[found]


def bragg_map(data, template_radius=4, threshold=0.1, min_distance=3, max_peaks=64, edge=2, relative_to=1):
    """The Bragg vector map of ``data`` (..., det_y, det_x)."""
    shape = data.shape[-2:]
    frames = data.reshape(-1, *shape)
    total = np.zeros(shape[0] * shape[1], np.float64)
    for start in range(0, len(frames), _CHUNK):
        flat, strength = find_disks(frames[start : start + _CHUNK], template_radius, threshold,
                                    min_distance, max_peaks, edge, relative_to)  # fmt: skip
        total += np.bincount(flat, weights=strength, minlength=total.size)
    return total.reshape(shape)


def _my_rows(filename):
    """Upstream-style parallel runs (no split input): this rank's scan rows of the file, as a lazy reference."""
    index, size = int(os.environ.get("OREMDA_PARALLEL_INDEX", 0)), int(os.environ.get("OREMDA_PARALLEL_SIZE", 1))
    return lazy.npy(data_root(), filename).part(index, size), size


def _map(data, params):
    if data.ndim < 3:
        raise ValueError(f"expected 4D-STEM data (..., det_y, det_x), got shape {data.shape}")
    return bragg_map(data, float(params["template_radius"]), float(params["threshold"]), int(params["min_distance"]),
                     int(params["max_peaks"]), int(params["edge"]), int(params.get("relative_to", 1)))  # fmt: skip


@operator
def bragg_vector_map(inputs, params):
    port = inputs.get("data")
    if port is not None and port.data is not None:
        return {"out": PortValue(_map(port.data, params), dict(port.meta))}
    if not params.get("filename"):
        raise ValueError("give 4D-STEM data on the 'data' input or a .npy file in 'filename'")
    # Read in chunks, summed, as for a lazy input (the same loop: progress, cancel, bounded memory).
    rows, ranks = _my_rows(params["filename"])
    context = lazy.Context(data_root(), None, ranks, report_progress, cancelled)
    parallel = {"split": {"port": "data", "axis": 0}, "join": {"out": "sum"}}
    inputs = {"data": PortValue(rows, {"filename": params["filename"]})}
    return lazy.call(lambda values: {"out": PortValue(_map(values["data"].data, params), values["data"].meta)},
                     inputs, parallel, context, as_port_value)  # fmt: skip
