"""npy_reader: a .npy file from the data folder -> ndarray."""

import numpy as np

from oremda_lab.worker.sdk import PortValue, data_path, operator, output_array


@operator
def npy_reader(inputs, params):
    filename = params["filename"]
    stored = np.load(data_path(filename), mmap_mode="r", allow_pickle=False)
    # Read straight into the output buffer (shared memory in a worker): one copy, no temporary.
    out = output_array(stored.shape, stored.dtype)
    out[...] = stored
    meta = {"filename": filename, "shape": list(stored.shape), "dtype": stored.dtype.name}
    return {"data": PortValue(out, meta)}
