"""crop2d: image[..., y0:y1, x0:x1] with bounds given as [x0, x1, y0, y1] (upstream order)."""

from oremda_lab.worker.sdk import PortValue, operator


@operator
def crop2d(inputs, params):
    image = inputs["image"]
    bounds = list(params.get("bounds") or [None, None, None, None])
    if len(bounds) != 4:
        raise ValueError(f"bounds must be [x0, x1, y0, y1], got {bounds!r}")
    x0, x1, y0, y1 = (None if b is None else int(b) for b in bounds)
    data = image.data
    ys = slice(y0, y1).indices(data.shape[-2])
    xs = slice(x0, x1).indices(data.shape[-1])
    out = data[..., ys[0] : ys[1], xs[0] : xs[1]]
    if out.size == 0:
        raise ValueError(f"bounds {bounds} leave nothing of a {data.shape[-2]}x{data.shape[-1]} image")
    meta = dict(image.meta)
    meta["crop"] = {"x0": xs[0], "x1": xs[1], "y0": ys[0], "y1": ys[1]}
    # Keep calibrated coordinates: the new corner is at the old offset + start * scale.
    if len(meta.get("axes", ())) == data.ndim:
        axes = [dict(a) for a in meta["axes"]]
        for axis, start, stop in ((-2, ys[0], ys[1]), (-1, xs[0], xs[1])):
            axes[axis]["offset"] = axes[axis].get("offset", 0.0) + start * axes[axis].get("scale", 1.0)
            axes[axis]["size"] = stop - start
        meta["axes"] = axes
        meta["offset"] = [a.get("offset", 0.0) for a in axes]
    return {"image": PortValue(out, meta)}
