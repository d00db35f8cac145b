"""npy_reader: a .npy file from the data folder -> ndarray, or a lazy reference for 4D data."""

import numpy as np

from oremda_lab.dataplane import lazy
from oremda_lab.worker.sdk import PortValue, data_path, data_root, operator, output_array


@operator
def npy_reader(inputs, params):
    filename = params["filename"]
    try:
        found = lazy.npy(data_root(), filename)  # reads the header only
    except lazy.TruncatedFile:
        raise
    except ValueError:
        found = None  # Fortran order, Python objects: np.load decides and says why
    if found is not None and found.ndim == 4:
        # 4D-STEM: a reference to the file; each worker reads its own part where it runs.
        meta = {"filename": filename, "shape": list(found.shape), "dtype": np.dtype(found.dtype).name}
        return {"data": PortValue(found, meta)}
    stored = np.load(data_path(filename), mmap_mode="r", allow_pickle=False)
    # Read straight into the output buffer (shared memory in a worker): one copy, no temporary.
    out = output_array(stored.shape, stored.dtype)
    out[...] = stored
    meta = {"filename": filename, "shape": list(stored.shape), "dtype": stored.dtype.name}
    return {"data": PortValue(out, meta)}
