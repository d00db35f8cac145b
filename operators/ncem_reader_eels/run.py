"""ncem_reader_eels: an EELS file -> (energy-loss axis, spectrum), via rosettasciio."""

import importlib

import numpy as np

from oremda_lab.worker.sdk import PortValue, data_path, operator

READERS = {
    ".dm3": "rsciio.digitalmicrograph",
    ".dm4": "rsciio.digitalmicrograph",
    ".msa": "rsciio.msa",
    ".emsa": "rsciio.msa",
    ".emd": "rsciio.emd",
    ".hspy": "rsciio.hspy",
}


@operator
def ncem_reader_eels(inputs, params):
    filename = params["filename"]
    path = data_path(filename)
    module = READERS.get(path.suffix.lower())
    if module is None:
        raise ValueError(f"no reader for {path.suffix!r}; known: {', '.join(sorted(READERS))}")
    found = importlib.import_module(module).file_reader(str(path))
    dataset = params.get("dataset", 0)
    if not 0 <= dataset < len(found):
        raise IndexError(f"{filename} holds {len(found)} datasets; dataset {dataset} does not exist")
    signal = found[dataset]
    axes = sorted(signal["axes"], key=lambda a: a.get("index_in_array", 0))
    # The signal (energy) axis is the last one; any others are navigation axes.
    energy = axes[-1]
    data = np.asarray(signal["data"], dtype=np.float64)
    summed = data.ndim > 1
    spec = data.reshape(-1, data.shape[-1]).sum(axis=0) if summed else data
    if spec.shape[0] == 0:
        # rosettasciio's MSA parser needs ": " after #SPECTRUM; without it (trailing space
        # stripped by an editor) it returns an empty spectrum instead of an error.
        raise ValueError(f"{filename}: no spectrum channels were read (for .msa: is the '#SPECTRUM : ' line intact?)")
    scale, offset = float(energy.get("scale", 1.0)), float(energy.get("offset", 0.0))
    eloss = offset + scale * np.arange(spec.shape[0], dtype=np.float64)
    units = str(energy.get("units", "") or "")
    common = {"filename": filename, "scale": scale, "offset": offset}
    return {
        "eloss": PortValue(eloss, {**common, "units": units, "quantity": "energy loss"}),
        "spec": PortValue(spec, {**common, "units": "counts", "summed_over_navigation": summed, "x_units": units}),
    }
