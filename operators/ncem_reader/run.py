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


@operator
def ncem_reader(inputs, params):
    data, meta = read(params["filename"], params.get("dataset", 0))
    return {"image": PortValue(data, meta)}
