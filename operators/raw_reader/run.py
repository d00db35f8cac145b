"""raw_reader: C-order elements of a given dtype and shape in a file -> ndarray, or a lazy reference for 4D data."""

import math

import numpy as np

from oremda_lab.dataplane import lazy
from oremda_lab.worker.sdk import PortValue, data_path, data_root, operator, output_array

# Element kinds a raw file is read as: bool, signed and unsigned integers, floats, complex.
KINDS = "biufc"


def element(dtype):
    """The numpy dtype the ``dtype`` param names (byte order included); ValueError unless plain numeric."""
    try:
        found = np.dtype(dtype) if isinstance(dtype, str) else None
    except TypeError:
        found = None
    if found is None or found.kind not in KINDS:
        raise ValueError(f"dtype {dtype!r} is not a numeric numpy dtype such as '<u2', '>f4' or 'u1'")
    return found


def dimensions(shape):
    """The ``shape`` param as a tuple of ints; ValueError unless a non-empty list of positive integers."""
    if isinstance(shape, (list, tuple)) and shape and all(_count(n) for n in shape):
        return tuple(int(n) for n in shape)
    raise ValueError(f"shape {shape!r} must be a list of positive integers, e.g. [scan_y, scan_x, det_y, det_x]")


def _count(n):
    """Whether ``n`` is a positive integer (JSON may give 4 as 4.0)."""
    return not isinstance(n, bool) and isinstance(n, (int, float)) and (isinstance(n, int) or n.is_integer()) and n >= 1


@operator
def raw_reader(inputs, params):
    filename, offset = params["filename"], params.get("offset", 0)
    dtype, shape = element(params["dtype"]), dimensions(params["shape"])
    path = data_path(filename)  # inside the data folder, a regular file
    needed = offset + math.prod(shape) * dtype.itemsize
    size = path.stat().st_size
    if size < needed:
        raise lazy.TruncatedFile(
            f"{filename} is {size} bytes, shorter than the {needed} that offset {offset} + shape {list(shape)} "
            f"of {dtype.str} ({dtype.itemsize} bytes each) need"
        )
    meta = {"filename": filename, "shape": list(shape), "dtype": dtype.name, "offset": offset}
    if len(shape) == 4:
        # 4D-STEM: a reference to the file; each worker reads its own part where it runs.
        return {"data": PortValue(lazy.raw(data_root(), filename, dtype.str, shape, offset), meta)}
    stored = np.memmap(path, dtype, "r", offset, shape)
    # Read straight into the output buffer (shared memory in a worker), swapping bytes on the way if needed.
    out = output_array(shape, dtype.newbyteorder("="))
    out[...] = stored
    return {"data": PortValue(out, meta)}
