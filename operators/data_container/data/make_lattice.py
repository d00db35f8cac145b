"""Generate lattice.tif: a 256x256 uint16 image of a noisy hexagonal lattice.

Run ``python make_lattice.py`` in this folder; the output is deterministic (seeded).
Lattice: a = 16 px, u = (0, 16), v = (13.856, 8) in (y, x) pixels, origin (10.3, 12.7);
Gaussian columns of sigma 2.2 px on a flat background, Poisson noise.
"""

from pathlib import Path

import numpy as np
import tifffile


def make(shape=(256, 256), a=16.0, sigma=2.2, origin=(10.3, 12.7), seed=0):
    """The lattice image as uint16 (Poisson counts on a background of 100)."""
    u = np.array([0.0, a])
    v = np.array([a * np.sqrt(3) / 2, a / 2])
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    image = np.zeros(shape)
    n = int(max(shape) / a) + 3
    for i in range(-n, n):
        for j in range(-n, n):
            y, x = np.asarray(origin) + i * u + j * v
            if -3 * sigma < y < shape[0] + 3 * sigma and -3 * sigma < x < shape[1] + 3 * sigma:
                image += np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
    rng = np.random.default_rng(seed)
    return rng.poisson(100 + 900 * image).astype(np.uint16)


if __name__ == "__main__":
    out = Path(__file__).with_name("lattice.tif")
    tifffile.imwrite(out, make(), description="oremda-lab synthetic hexagonal lattice, a=16 px")
    print(out, out.stat().st_size)
