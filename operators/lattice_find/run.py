"""lattice_find: lattice vectors, origin and basis fitted to peak positions.

1. Difference vectors to each peak's nearest neighbours are clustered.
2. A cluster centre t is a translation when p + t lands on a peak for at least
   ``min_support`` of the peaks p (targets outside the peaks' bounding box are not
   counted). Basis vectors of a non-Bravais crystal (e.g. Mo -> S in MoS2) map only
   one sublattice, so they fail this test.
3. u = shortest translation, v = shortest one not parallel to u, Gauss-reduced.
4. Every peak gets fractional coordinates; their parts modulo the cell are clustered
   into basis sites; then origin, u, v and the basis offsets are fitted jointly by
   linear least squares to all peaks that sit on a site (two rounds).
"""

import numpy as np
from scipy.spatial import cKDTree

from oremda_lab.worker.sdk import PortValue, operator


def _cluster(points, tol, min_count):
    """Greedy density clustering: list of (centre, member indices), densest first."""
    tree = cKDTree(points)
    counts = tree.query_ball_point(points, tol, return_length=True)
    free = np.ones(len(points), bool)
    clusters = []
    for i in np.argsort(-counts, kind="stable"):
        if not free[i]:
            continue
        members = [m for m in tree.query_ball_point(points[i], tol) if free[m]]
        if len(members) < min_count:
            continue
        free[members] = False
        clusters.append((points[members].mean(axis=0), np.array(members)))
    return clusters


def _translations(peaks, tree, tol, min_support):
    """Candidate lattice translations sorted by length (each a (y, x) vector)."""
    k = min(len(peaks), 21)
    _, idx = tree.query(peaks, k=k)
    diffs = (peaks[idx[:, 1:]] - peaks[:, None, :]).reshape(-1, 2)
    lo, hi = peaks.min(axis=0) + tol, peaks.max(axis=0) - tol
    found = []
    for centre, _ in _cluster(diffs, tol, max(3, len(peaks) // 20)):
        target = peaks + centre
        inside = np.all((target >= lo) & (target <= hi), axis=1)
        if inside.sum() < 3:
            continue
        dist, _ = tree.query(target[inside])
        support = float(np.mean(dist < tol))
        if support >= min_support:
            found.append(centre)
    return sorted(found, key=lambda t: float(np.hypot(*t)))


def _reduce(u, v):
    """Lagrange-Gauss reduction: the shortest basis of the lattice spanned by u, v."""
    u, v = np.asarray(u, float), np.asarray(v, float)
    if u @ u > v @ v:
        u, v = v, u
    for _ in range(100):
        m = round(float(u @ v) / float(u @ u))
        v = v - m * u
        if v @ v >= u @ u:
            break
        u, v = v, u
    return u, v


def _orient(u, v):
    """U points to +x (or +y when vertical); v makes an acute angle with u."""
    if u[1] < -1e-9 or (abs(u[1]) <= 1e-9 and u[0] < 0):
        u = -u
    if u @ v < 0:
        v = -v
    return u, v


def _fit(peaks, frac_int, site, n_sites):
    """Joint LSQ of origin, u, v and basis offsets (site 0 has offset 0)."""
    n = len(peaks)
    design = np.zeros((n, 3 + n_sites - 1))
    design[:, 0] = 1
    design[:, 1:3] = frac_int
    for k in range(1, n_sites):
        design[site == k, 2 + k] = 1
    solution, *_ = np.linalg.lstsq(design, peaks, rcond=None)
    origin, u, v = solution[0], solution[1], solution[2]
    offsets = np.vstack([np.zeros(2), solution[3:]]) if n_sites > 1 else np.zeros((1, 2))
    return origin, u, v, offsets


def find_lattice(peaks, intensities, tolerance=0.2, min_support=0.75):
    """Fit the lattice; returns origin, u, v, ideal positions and a report dict."""
    tree = cKDTree(peaks)
    nn = float(np.median(tree.query(peaks, k=2)[0][:, 1]))
    tol = tolerance * nn
    candidates = _translations(peaks, tree, tol, min_support)
    if not candidates:
        raise ValueError("no lattice translation maps the peaks onto themselves; is this a lattice?")
    u = candidates[0]
    others = [t for t in candidates[1:] if abs(u[0] * t[1] - u[1] * t[0]) > 0.2 * np.hypot(*u) * np.hypot(*t)]
    if not others:
        raise ValueError("found only one lattice direction; need at least two non-parallel translations")
    u, v = _orient(*_reduce(u, others[0]))

    centre = peaks.mean(axis=0)
    origin = peaks[np.argmin(np.hypot(*(peaks - centre).T))]
    offsets = np.zeros((1, 2))
    for _ in range(3):
        basis = np.column_stack([u, v])  # columns u, v: position = origin + basis @ (i, j)
        frac = np.linalg.solve(basis, (peaks - origin).T).T
        cell = frac - np.floor(frac)
        # Cluster fractional positions within the cell, periodically (3 x 3 images).
        shifts = np.array([(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)], float)
        tiled = (cell[None, :, :] + shifts[:, None, :]).reshape(-1, 2) @ basis.T
        sites = []
        for centre_px, members in _cluster(tiled, tol, max(2, len(peaks) // 50)):
            c = np.linalg.solve(basis, centre_px)
            if np.all((c >= -1e-9) & (c < 1 - 1e-9)):  # keep the copy inside the cell
                sites.append((c, np.unique(members % len(peaks))))
        if not sites:
            raise ValueError("peaks do not sit on the fitted lattice")
        # The brightest site becomes site 0, the one the origin sits on.
        brightness = [float(np.mean(intensities[m])) if intensities is not None else len(m) for _, m in sites]
        sites = [sites[i] for i in np.argsort(brightness)[::-1]]
        site_frac = np.array([c for c, _ in sites])
        rel = frac[:, None, :] - site_frac[None, :, :]
        rel_int = np.round(rel)
        resid = np.hypot(*((rel - rel_int) @ basis.T).transpose(2, 0, 1))
        site = np.argmin(resid, axis=1)
        on = resid[np.arange(len(peaks)), site] < tol
        ij = rel_int[np.arange(len(peaks)), site]
        # Re-anchor: index the site-0 peak nearest the centre as (0, 0) first.
        anchor_candidates = np.flatnonzero(on & (site == 0))
        if len(anchor_candidates) == 0:
            anchor_candidates = np.flatnonzero(on)
        anchor = anchor_candidates[np.argmin(np.hypot(*(peaks[anchor_candidates] - centre).T))]
        ij = ij - ij[anchor]
        origin, u, v, offsets = _fit(peaks[on], ij[on], site[on], len(sites))
    ideal = origin + ij @ np.vstack([u, v]) + offsets[site]
    rms = float(np.sqrt(np.mean(np.sum((peaks[on] - ideal[on]) ** 2, axis=1))))
    report = {
        "nearest_neighbour_px": nn,
        "tolerance_px": tol,
        "n_on_lattice": int(on.sum()),
        "n_peaks": int(len(peaks)),
        "basis": offsets.tolist(),
        "site_counts": [int(np.sum(on & (site == k))) for k in range(len(sites))],
        "rms_residual_px": rms,
        "indices": ij.astype(int).tolist() if len(peaks) <= 20000 else None,
        "site": site.astype(int).tolist() if len(peaks) <= 20000 else None,
    }
    return origin, u, v, ideal, report


@operator
def lattice_find(inputs, params):
    peaks = np.asarray(inputs["peaks"].data, dtype=np.float64).reshape(-1, 2)
    if len(peaks) < 4:
        raise ValueError(f"lattice_find needs at least 4 peaks, got {len(peaks)}")
    image = inputs.get("image")
    intensities = None
    if image is not None and image.data is not None and np.ndim(image.data) == 2:
        img = np.asarray(image.data)
        iy = np.clip(np.round(peaks[:, 0]).astype(int), 0, img.shape[0] - 1)
        ix = np.clip(np.round(peaks[:, 1]).astype(int), 0, img.shape[1] - 1)
        intensities = img[iy, ix].astype(np.float64)
    origin, u, v, ideal, report = find_lattice(peaks, intensities, params["tolerance"], params["min_support"])
    vec_meta = {"convention": "(y, x) in pixels"}
    return {
        "origin": PortValue(origin, vec_meta),
        "u": PortValue(u, {**vec_meta, "length_px": float(np.hypot(*u))}),
        "v": PortValue(v, {**vec_meta, "length_px": float(np.hypot(*v))}),
        "lattice": PortValue(ideal, {"convention": "rows (y, x) in pixels, one per input peak", **report}),
    }
