"""peak_opt: per-peak 2D Gaussian fit, B + A exp(-(y-y0)^2/2sy^2 - (x-x0)^2/2sx^2).

Each fit is a bounded least-squares problem (scipy.optimize.least_squares, analytic
Jacobian) on the pixels within +-cutout of the input position; the centre may move
at most ``cutout`` pixels. Positions are pixel-centre coordinates: pixel [i, j]
covers y in [i - 0.5, i + 0.5].
"""

import numpy as np
from scipy.optimize import least_squares

from oremda_lab.worker.sdk import PortValue, operator


def _residuals(p, y, x, z):
    b, a, y0, x0, sy, sx = p
    return b + a * np.exp(-((y - y0) ** 2) / (2 * sy**2) - (x - x0) ** 2 / (2 * sx**2)) - z


def _jacobian(p, y, x, z):
    b, a, y0, x0, sy, sx = p
    dy, dx = y - y0, x - x0
    g = np.exp(-(dy**2) / (2 * sy**2) - dx**2 / (2 * sx**2))
    ag = a * g
    return np.column_stack(
        [np.ones_like(g), g, ag * dy / sy**2, ag * dx / sx**2, ag * dy**2 / sy**3, ag * dx**2 / sx**3]
    )


def fit_peak(image, y, x, cutout):
    """Fit one peak near (y, x): (y0, x0, sigma_y, sigma_x) or None when the fit fails."""
    h, w = image.shape
    iy, ix = int(round(y)), int(round(x))
    y_lo, y_hi = max(iy - cutout, 0), min(iy + cutout + 1, h)
    x_lo, x_hi = max(ix - cutout, 0), min(ix + cutout + 1, w)
    if y_hi - y_lo < 3 or x_hi - x_lo < 3:
        return None
    z = image[y_lo:y_hi, x_lo:x_hi].ravel()
    yy, xx = np.mgrid[y_lo:y_hi, x_lo:x_hi]
    yy, xx = yy.ravel().astype(np.float64), xx.ravel().astype(np.float64)
    b0, top = float(z.min()), float(z.max())
    amp = max(top - b0, 1e-12 * max(abs(top), 1.0))
    s0 = max(cutout / 3.0, 0.8)
    start = [b0, amp, float(y), float(x), s0, s0]
    span = max(abs(top), abs(b0), amp)
    lower = [b0 - 2 * span, 0.0, y - cutout, x - cutout, 0.25, 0.25]
    upper = [top + span, 4 * amp + 1e-12, y + cutout, x + cutout, 2.0 * cutout + 1, 2.0 * cutout + 1]
    start = np.clip(start, np.array(lower) + 1e-9, np.array(upper) - 1e-9)
    try:
        fit = least_squares(
            _residuals,
            start,
            jac=_jacobian,
            bounds=(lower, upper),
            args=(yy, xx, z),
            x_scale="jac",
            xtol=1e-10,
            ftol=1e-10,
            max_nfev=200,
        )
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not fit.success:
        return None
    return fit.x[2], fit.x[3], fit.x[4], fit.x[5]


@operator
def peak_opt(inputs, params):
    image = np.asarray(inputs["image"].data, dtype=np.float64)
    peaks = np.asarray(inputs["peaks"].data, dtype=np.float64).reshape(-1, 2)
    if image.ndim != 2:
        raise ValueError(f"peak_opt needs a 2D image, got shape {image.shape}")
    cutout = int(params["cutout"])
    refined = peaks.copy()
    sigmas = np.full_like(peaks, np.nan)
    failed = 0
    for i, (y, x) in enumerate(peaks):
        result = fit_peak(image, y, x, cutout)
        if result is None:
            failed += 1
            continue
        refined[i] = result[:2]
        sigmas[i] = result[2:]
    meta = {"convention": "rows (y, x) in pixels", "count": int(len(peaks)), "failed": failed, "cutout": cutout}
    for key in ("pixel_size", "pixel_unit", "image_shape"):
        if key in inputs["peaks"].meta:
            meta[key] = inputs["peaks"].meta[key]
    return {
        "peaks": PortValue(refined, meta),
        "sigmas": PortValue(sigmas, {"convention": "rows (sigma_y, sigma_x) in pixels"}),
    }
