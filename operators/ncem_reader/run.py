"""ncem_reader: an EM image file -> ndarray plus calibration, via rosettasciio."""

import importlib

from oremda_lab.worker.sdk import PortValue, data_path, operator

# File extension -> rosettasciio plugin module (each has ``file_reader``).
READERS = {
    ".emd": "rsciio.emd",
    ".dm3": "rsciio.digitalmicrograph",
    ".dm4": "rsciio.digitalmicrograph",
    ".ser": "rsciio.tia",
    ".emi": "rsciio.tia",
    ".mrc": "rsciio.mrc",
    ".hspy": "rsciio.hspy",
}


def read(filename, dataset=0):
    """Read dataset ``dataset`` of ``filename`` (a path): (data, meta)."""
    path = data_path(filename)
    module = READERS.get(path.suffix.lower())
    if module is None:
        raise ValueError(f"no reader for {path.suffix!r}; known: {', '.join(sorted(READERS))}")
    found = importlib.import_module(module).file_reader(str(path))
    if not 0 <= dataset < len(found):
        raise IndexError(f"{filename} holds {len(found)} datasets; dataset {dataset} does not exist")
    signal = found[dataset]
    axes = sorted(signal["axes"], key=lambda a: a.get("index_in_array", 0))
    axes = [
        {
            "name": str(a.get("name", "")),
            "size": int(a.get("size", 0)),
            "scale": float(a.get("scale", 1.0)),
            "offset": float(a.get("offset", 0.0)),
            "units": str(a.get("units", "") or ""),
            "navigate": bool(a.get("navigate", False)),
        }
        for a in axes
    ]
    general = signal.get("metadata", {}).get("General", {})
    meta = {
        "filename": filename,
        "title": str(general.get("title", "")),
        "axes": axes,
        "pixel_size": [a["scale"] for a in axes],
        "pixel_unit": [a["units"] for a in axes],
        "offset": [a["offset"] for a in axes],
        "n_datasets": len(found),
    }
    return signal["data"], meta


def read_ncempy(filename):
    """Read ``filename`` with ncempy.io.read (one dataset): (data, meta)."""
    import ncempy.io

    found = ncempy.io.read(str(data_path(filename)))
    data = found["data"]
    sizes = [float(s) for s in found.get("pixelSize", [1.0] * data.ndim)]
    units = [str(u) for u in found.get("pixelUnit", [""] * data.ndim)]
    offsets = [float(c[0]) if len(c) else 0.0 for c in found.get("coords", [])] or [0.0] * data.ndim
    axes = [
        {"name": "", "size": int(n), "scale": s, "offset": o, "units": u, "navigate": False}
        for n, s, o, u in zip(data.shape, sizes, offsets, units, strict=False)
    ]
    meta = {"filename": filename, "title": str(found.get("detectorName", "")), "axes": axes,
            "pixel_size": sizes, "pixel_unit": units, "offset": offsets, "n_datasets": 1}  # fmt: skip
    return data, meta


@operator
def ncem_reader(inputs, params):
    if params.get("backend", "rosettasciio") == "ncempy":
        data, meta = read_ncempy(params["filename"])
    else:
        data, meta = read(params["filename"], params.get("dataset", 0))
    meta["backend"] = params.get("backend", "rosettasciio")
    return {"image": PortValue(data, meta)}
