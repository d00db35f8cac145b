"""py4dstem_virtual_image: py4DSTEM's own virtual detector on a 4D-STEM scan."""

import numpy as np
import py4DSTEM

from oremda_lab.worker.sdk import PortValue, operator, stem_detector


def geometry(inner_radius, outer_radius, center):
    """py4DSTEM's (mode, geometry) for a disk (inner 0) or a ring about ``center`` (qx, qy)."""
    if inner_radius <= 0:
        return "circle", (center, outer_radius)
    return "annulus", (center, (inner_radius, outer_radius))


@operator
def py4dstem_virtual_image(inputs, params):
    data = inputs["data"].data
    inner, outer, center = stem_detector(data.shape, params, empty_ring=False)  # py4DSTEM cannot draw one
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
