"""py4dstem_virtual_image: py4DSTEM's own virtual detector on a 4D-STEM scan."""

import numpy as np
import py4DSTEM

from oremda_lab.worker.sdk import PortValue, operator


def geometry(inner_radius, outer_radius, center):
    """py4DSTEM's (mode, geometry) for a disk (inner 0) or a ring about ``center`` (qx, qy)."""
    if inner_radius <= 0:
        return "circle", (center, outer_radius)
    return "annulus", (center, (inner_radius, outer_radius))


@operator
def py4dstem_virtual_image(inputs, params):
    data = inputs["data"].data
    if data.ndim != 4:
        raise ValueError(f"expected 4D-STEM data (scan_y, scan_x, det_y, det_x), got shape {data.shape}")
    inner, outer = float(params.get("inner_radius", 0)), float(params["outer_radius"])
    if outer <= inner:
        raise ValueError(f"outer_radius {outer} must exceed inner_radius {inner}")
    center = params.get("center") or (data.shape[2] // 2, data.shape[3] // 2)
    center = (float(center[0]), float(center[1]))
    mode, geo = geometry(inner, outer, center)
    # py4DSTEM reads the array in place (a read-only view of shared memory is enough).
    datacube = py4DSTEM.DataCube(data=data)
    mask = datacube.get_virtual_image(mode=mode, geometry=geo, return_mask=True)
    image = datacube.get_virtual_image(mode=mode, geometry=geo, verbose=False)
    meta = {
        **inputs["data"].meta,
        "detector": {
            "mode": mode,
            "inner_radius": inner,
            "outer_radius": outer,
            "center": list(center),
            "pixels": int(np.count_nonzero(mask)),
        },
        "py4DSTEM": py4DSTEM.__version__,
    }
    return {"image": PortValue(np.asarray(image.data, np.float64), meta)}
