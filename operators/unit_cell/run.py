"""unit_cell: the mean of every whole unit cell in the image, sampled on a cell grid."""

import numpy as np
from scipy import ndimage

from oremda_lab.worker.sdk import PortValue, operator


def average_cell(image, origin, u, v, oversample=1.0, order=1):
    """Average cell image (rows along v, columns along u) and the number of cells used."""
    n_u = max(2, int(round(np.hypot(*u) * oversample)))
    n_v = max(2, int(round(np.hypot(*v) * oversample)))
    basis = np.column_stack([u, v])
    h, w = image.shape
    corners = np.array([[0, 0], [0, w - 1], [h - 1, 0], [h - 1, w - 1]], float)
    frac = np.linalg.solve(basis, (corners - origin).T)
    i_range = np.arange(int(np.floor(frac[0].min())) - 1, int(np.ceil(frac[0].max())) + 1)
    j_range = np.arange(int(np.floor(frac[1].min())) - 1, int(np.ceil(frac[1].max())) + 1)
    ii, jj = np.meshgrid(i_range, j_range, indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    # Keep cells whose four corners are inside the image.
    inside = np.ones(len(ii), bool)
    for di, dj in ((0, 0), (1, 0), (0, 1), (1, 1)):
        p = origin + np.outer(ii + di, u) + np.outer(jj + dj, v)
        inside &= np.all((p >= 0) & (p <= [h - 1, w - 1]), axis=1)
    ii, jj = ii[inside], jj[inside]
    if len(ii) == 0:
        raise ValueError("no whole unit cell lies inside the image")
    a = np.arange(n_u) / n_u
    b = np.arange(n_v) / n_v
    # Sample points: (cell, row along v, column along u) -> (y, x).
    fu = ii[:, None, None] + a[None, None, :]
    fv = jj[:, None, None] + b[None, :, None]
    ys = origin[0] + fu * u[0] + fv * v[0]
    xs = origin[1] + fu * u[1] + fv * v[1]
    samples = ndimage.map_coordinates(image, [ys.ravel(), xs.ravel()], order=order, mode="nearest")
    return samples.reshape(len(ii), n_v, n_u).mean(axis=0), len(ii)


@operator
def unit_cell(inputs, params):
    image = np.asarray(inputs["image"].data, dtype=np.float64)
    origin, u, v = (np.asarray(inputs[k].data, dtype=np.float64).reshape(2) for k in ("origin", "u", "v"))
    if abs(u[0] * v[1] - u[1] * v[0]) < 1e-9:
        raise ValueError("u and v are parallel")
    cell, n_cells = average_cell(image, origin, u, v, float(params["oversample"]), int(params.get("order", 1)))
    meta = {"n_cells": n_cells, "u": u.tolist(), "v": v.tolist(), "layout": "rows along v, columns along u"}
    return {"image": PortValue(cell, meta)}
