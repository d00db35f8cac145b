"""ncem_reader: an EM image file -> ndarray plus calibration, via rosettasciio.

4D data (Berkeley EMD / HDF5 4D datasets, Quantum Detectors .mib, DM4 4D) come as a
lazy reference to the file instead (:mod:`oremda_lab.dataplane.lazy`): data-parallel
operators read it in parts where they run.
"""

import importlib

from oremda_lab.dataplane import lazy
from oremda_lab.worker.sdk import PortValue, data_path, data_root, operator

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


def read_lazy(filename, dataset=0, scan_shape=None):
    """A lazy reference to ``filename``'s dataset when it is 4D (.mib: always), else None."""
    suffix = data_path(filename).suffix.lower()
    if suffix == ".mib":
        found = lazy.mib(data_root(), filename, tuple(scan_shape) if scan_shape else None)
    elif suffix in (".emd", ".h5", ".hdf5"):
        try:
            names = lazy.emd_datasets(data_root(), filename)
        except OSError:
            return None  # not HDF5: rosettasciio says what it is
        if not 0 <= dataset < len(names):
            return None
        found = lazy.hdf5(data_root(), filename, names[dataset])
    elif suffix == ".dm4":
        found = lazy.dm4(data_root(), filename)
    else:
        return None
    return found if found.ndim == 4 or suffix == ".mib" else None


@operator
def ncem_reader(inputs, params):
    if params.get("backend", "rosettasciio") == "rosettasciio":
        found = read_lazy(params["filename"], params.get("dataset", 0), params.get("scan_shape"))
        if found is not None:
            meta = {"filename": params["filename"], "shape": list(found.shape), "dtype": found.dtype,
                    "dataset": found.dataset, "lazy": found.format, "backend": "rosettasciio"}  # fmt: skip
            return {"image": PortValue(found, meta)}
    if params.get("backend", "rosettasciio") == "ncempy":
        data, meta = read_ncempy(params["filename"])
    else:
        data, meta = read(params["filename"], params.get("dataset", 0))
    meta["backend"] = params.get("backend", "rosettasciio")
    return {"image": PortValue(data, meta)}
