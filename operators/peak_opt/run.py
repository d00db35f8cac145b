"""peak_opt: per-peak 2D Gaussian fit, B + A exp(-(y-y0)^2/2sy^2 - (x-x0)^2/2sx^2).

Every peak is fitted on the pixels within +-cutout of its input position (clipped at
the image border) by Levenberg-Marquardt least squares with an analytic Jacobian. The
fits are independent, so they run batched: one numpy step advances all of them (a few
hundred ms for thousands of peaks, where one scipy call per peak took ~2.5 ms each).
The centre is kept within ``cutout`` px of the start and the widths within
[0.25, 2 cutout + 1] px. Positions are pixel-centre coordinates: pixel [i, j] covers
y in [i - 0.5, i + 0.5].
"""

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator

BATCH = 4096  # peaks per batch: bounds the Jacobian's memory (BATCH x window x 6 floats)


def _model(p, y, x):
    b, a, y0, x0, sy, sx = (p[:, k : k + 1] for k in range(6))
    dy, dx = y - y0, x - x0
    g = np.exp(-(dy**2) / (2 * sy**2) - dx**2 / (2 * sx**2))
    return b + a * g, g, dy, dx


def _jacobian(p, g, dy, dx):
    a, sy, sx = p[:, 1:2], p[:, 4:5], p[:, 5:6]
    ag = a * g
    cols = [np.ones_like(g), g, ag * dy / sy**2, ag * dx / sx**2, ag * dy**2 / sy**3, ag * dx**2 / sx**3]
    return np.stack(cols, axis=-1)


def fit_batch(y, x, z, w, start, lower, upper, iterations=200):
    """Levenberg-Marquardt for many small fits at once.

    ``y, x, z, w`` are (n, m) pixel coordinates, values and weights (0 = outside the
    image); ``start, lower, upper`` are (n, 6). Returns the (n, 6) parameters.
    """
    p = start.copy()
    model, g, dy, dx = _model(p, y, x)
    cost = np.sum(w * (model - z) ** 2, axis=1)
    lam = np.full(len(p), 1e-3)
    active = np.ones(len(p), bool)
    eye = np.eye(6)
    for _ in range(iterations):
        idx = np.flatnonzero(active)
        if len(idx) == 0:
            break
        pa = p[idx]
        r = model[idx] - z[idx]
        jac = _jacobian(pa, g[idx], dy[idx], dx[idx])
        jw = jac * w[idx][..., None]
        jwt = jw.transpose(0, 2, 1)
        jtj = jwt @ jac
        grad = (jwt @ r[..., None])[..., 0]
        diag = np.einsum("nii->ni", jtj)
        damped = jtj + (lam[idx][:, None, None] * (diag[:, :, None] * eye + 1e-12 * eye))
        try:
            step = np.linalg.solve(damped, -grad[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.stack([np.linalg.lstsq(d, -gr, rcond=None)[0] for d, gr in zip(damped, grad, strict=True)])
        trial = np.clip(pa + step, lower[idx], upper[idx])
        t_model, t_g, t_dy, t_dx = _model(trial, y[idx], x[idx])
        t_cost = np.sum(w[idx] * (t_model - z[idx]) ** 2, axis=1)
        better = np.isfinite(t_cost) & (t_cost <= cost[idx])
        good = idx[better]
        # Converged: the accepted step no longer changes the cost or moves the parameters.
        small = np.abs(cost[good] - t_cost[better]) <= 1e-10 * np.maximum(cost[good], 1e-300)
        tiny = np.all(np.abs(trial[better] - pa[better]) <= 1e-7 * (np.abs(pa[better]) + 1e-3), axis=1)
        p[good], cost[good] = trial[better], t_cost[better]
        model[good], g[good], dy[good], dx[good] = t_model[better], t_g[better], t_dy[better], t_dx[better]
        lam[good] = np.maximum(lam[good] / 3, 1e-12)
        bad = idx[~better]
        lam[bad] *= 4
        active[good[small | tiny]] = False
        active[bad[lam[bad] > 1e12]] = False
    return p


def refine(image, peaks, cutout):
    """Fit every peak; returns positions (n, 2), sigmas (n, 2) and a failure mask."""
    h, w = image.shape
    n, c = len(peaks), cutout
    refined, sigmas = peaks.astype(np.float64).copy(), np.full((n, 2), np.nan)
    failed = np.zeros(n, bool)
    offsets = np.arange(-c, c + 1)
    oy, ox = np.meshgrid(offsets, offsets, indexing="ij")
    oy, ox = oy.ravel(), ox.ravel()
    for lo in range(0, n, BATCH):
        sel = slice(lo, min(lo + BATCH, n))
        yx = refined[sel]
        iy, ix = np.round(yx[:, 0]).astype(int), np.round(yx[:, 1]).astype(int)
        yy, xx = iy[:, None] + oy[None, :], ix[:, None] + ox[None, :]
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        z = image[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
        weight = inside.astype(np.float64)
        rows_ok = (inside.reshape(-1, 2 * c + 1, 2 * c + 1).any(axis=2).sum(axis=1) >= 3) & (
            inside.reshape(-1, 2 * c + 1, 2 * c + 1).any(axis=1).sum(axis=1) >= 3
        )
        zin = np.where(inside, z, np.nan)
        b0, top = np.nanmin(zin, axis=1), np.nanmax(zin, axis=1)
        amp = np.maximum(top - b0, 1e-12 * np.maximum(np.abs(top), 1.0))
        span = np.maximum.reduce([np.abs(top), np.abs(b0), amp]) / amp
        # Fit (z - b0) / amp, so one damping schedule suits every intensity range.
        zn = (z - b0[:, None]) / amp[:, None]
        y0, x0 = yx[:, 0], yx[:, 1]
        zero, one = np.zeros_like(b0), np.ones_like(b0)
        s0 = max(c / 3.0, 0.8)
        start = np.column_stack([zero, one, y0, x0, s0 * one, s0 * one])
        lower = np.column_stack([-2 * span, zero, y0 - c, x0 - c, 0.25 * one, 0.25 * one])
        upper = np.column_stack([1 + span, 4 * one, y0 + c, x0 + c, (2 * c + 1) * one, (2 * c + 1) * one])
        p = fit_batch(yy.astype(np.float64), xx.astype(np.float64), zn, weight, start, lower, upper)
        ok = rows_ok & np.all(np.isfinite(p), axis=1)
        block = refined[sel]
        block[ok] = p[ok, 2:4]
        refined[sel] = block
        sig = sigmas[sel]
        sig[ok] = p[ok, 4:6]
        sigmas[sel] = sig
        failed[sel] = ~ok
    return refined, sigmas, failed


@operator
def peak_opt(inputs, params):
    image = np.asarray(inputs["image"].data, dtype=np.float64)
    peaks = np.asarray(inputs["peaks"].data, dtype=np.float64).reshape(-1, 2)
    if image.ndim != 2:
        raise ValueError(f"peak_opt needs a 2D image, got shape {image.shape}")
    cutout = int(params["cutout"])
    refined, sigmas, failed = refine(image, peaks, cutout)
    meta = {"convention": "rows (y, x) in pixels", "count": len(peaks), "failed": int(failed.sum()), "cutout": cutout}
    for key in ("pixel_size", "pixel_unit", "image_shape"):
        if key in inputs["peaks"].meta:
            meta[key] = inputs["peaks"].meta[key]
    sigma_meta = {"convention": "rows (sigma_y, sigma_x) in pixels"}
    return {"peaks": PortValue(refined, meta), "sigmas": PortValue(sigmas, sigma_meta)}
