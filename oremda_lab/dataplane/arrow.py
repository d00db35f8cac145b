"""Arrow tensor messages in a buffer: write an ndarray in, read a zero-copy view out.

Dtypes Arrow tensors cannot hold (complex, datetime...) travel as a uint8 tensor
of their raw bytes and are viewed back with the recorded dtype and shape, still
without a copy.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def as_tensor(array: np.ndarray) -> tuple[pa.Tensor, bool]:
    """The Arrow tensor to write, and whether it is the raw-bytes fallback."""
    array = np.ascontiguousarray(array)
    try:
        return pa.Tensor.from_numpy(array), False
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError, ValueError):
        return pa.Tensor.from_numpy(array.reshape(-1).view(np.uint8)), True


def tensor_size(tensor: pa.Tensor) -> int:
    """Bytes the tensor message takes."""
    return pa.ipc.get_tensor_size(tensor)


def write_tensor(tensor: pa.Tensor, buffer: pa.Buffer) -> None:
    """Write the tensor message at the start of a mutable buffer."""
    sink = pa.FixedSizeBufferWriter(buffer)
    sink.set_memcopy_threads(_COPY_THREADS)
    pa.ipc.write_tensor(tensor, sink)


def read_array(buffer: pa.Buffer, dtype: str, shape: tuple[int, ...], fallback: bool) -> np.ndarray:
    """A read-only numpy view of the tensor message at the start of ``buffer``."""
    tensor = pa.ipc.read_tensor(pa.BufferReader(buffer))
    array = tensor.to_numpy()
    if fallback or array.dtype != np.dtype(dtype):  # raw bytes, or bool stored as uint8
        array = array.reshape(-1).view(np.dtype(dtype))
    if array.shape != tuple(shape):  # 0-d arrays travel as one element
        array = array.reshape(shape)
    array.flags.writeable = False
    return array


# Two threads saturate memory bandwidth on small machines; more only contend.
_COPY_THREADS = 2
