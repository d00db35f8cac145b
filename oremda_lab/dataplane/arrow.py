"""Arrow tensor messages in a buffer: write an ndarray in, read a zero-copy view out.

Dtypes Arrow tensors cannot hold (complex, datetime...) travel as a uint8 tensor
of their raw bytes and are viewed back with the recorded dtype and shape, still
without a copy. Every array is C-contiguous (:func:`as_tensor` makes it so), which
lets a reader view the body directly.
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
    pa.ipc.write_tensor(tensor, pa.FixedSizeBufferWriter(buffer))


def tensor_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes | None:
    """The bytes of an Arrow tensor message that precede its body.

    Lets a writer fill the body in place. None for dtypes Arrow tensors cannot hold.
    """
    try:
        # np.empty of any size touches no page: only the metadata is computed here.
        tensor = pa.Tensor.from_numpy(np.empty(shape, dtype))
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError, ValueError):
        return None
    header = bytearray(tensor_size(tensor) - int(np.prod(shape)) * np.dtype(dtype).itemsize)
    try:
        # The sink holds the header exactly, so writing stops (and raises) at the body,
        # before a single byte of it is copied.
        pa.ipc.write_tensor(tensor, pa.FixedSizeBufferWriter(pa.py_buffer(header)))
    except OSError:
        pass
    return bytes(header)


def read_array(buffer: pa.Buffer, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """A read-only numpy view of the tensor message at the start of ``buffer``.

    The view is made over ``buffer`` itself, not over the Arrow tensor (which numpy
    takes for writable): over a read-only buffer, ``flags.writeable = True`` raises.
    The body may hold ``dtype`` itself or its raw bytes (see :func:`as_tensor`).
    """
    tensor = pa.ipc.read_tensor(pa.BufferReader(buffer))
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    body = tensor.to_numpy()
    if body.nbytes != count * dtype.itemsize:
        raise ValueError(f"tensor of {body.nbytes} bytes cannot be a {dtype} array of shape {tuple(shape)}")
    if count == 0:
        array = np.empty(shape, dtype)
    else:
        offset = body.ctypes.data - buffer.address
        array = np.frombuffer(buffer, dtype, count, offset=offset).reshape(shape)
    array.flags.writeable = False
    return array
