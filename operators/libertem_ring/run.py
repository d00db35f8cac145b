"""libertem_ring: LiberTEM's mask application (ApplyMasksUDF) with a ring or disk mask."""

import functools

import libertem
import numpy as np
from libertem import masks
from libertem.api import Context
from libertem.udf.masks import ApplyMasksUDF

from oremda_lab.worker.sdk import PortValue, operator, stem_detector


def mask_factory(shape, inner_radius, outer_radius, center, antialiased):
    """A LiberTEM mask factory: ring (inner > 0) or disk about ``center`` (y, x)."""
    cy, cx = center
    if inner_radius > 0:
        return functools.partial(masks.ring, cx, cy, shape[1], shape[0], outer_radius, inner_radius, antialiased)
    return functools.partial(masks.circular, cx, cy, shape[1], shape[0], outer_radius, antialiased)


@functools.cache
def context():
    """LiberTEM's inline executor, made once per worker (it holds no data between runs)."""
    return Context.make_with("inline")


@operator
def libertem_ring(inputs, params):
    data = inputs["data"].data
    inner, outer, center = stem_detector(data.shape, params)  # a ring of no width is an empty mask here
    ctx = context()
    dataset = ctx.load("memory", data=data, sig_dims=2)
    factory = mask_factory(data.shape[2:], inner, outer, center, bool(params["antialiased"]))
    udf = ApplyMasksUDF(mask_factories=[factory], use_torch=False)
    intensity = ctx.run_udf(dataset=dataset, udf=udf)["intensity"].data[..., 0]
    meta = {
        **inputs["data"].meta,
        "detector": {
            "inner_radius": inner,
            "outer_radius": outer,
            "center": list(center),
            "antialiased": bool(params["antialiased"]),
            "weight": float(np.sum(factory())),
        },
        "libertem": libertem.__version__,
    }
    return {"image": PortValue(np.array(intensity), meta)}
