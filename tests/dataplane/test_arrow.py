import numpy as np
import pyarrow as pa
import pytest

from oremda_lab.dataplane.arrow import read_array, tensor_header


@pytest.mark.parametrize("shape, dtype", [((64, 32), "float64"), ((3,), "int16"), ((), "float32"), ((0, 4), "uint8")])
def test_header_then_body_is_a_whole_tensor_message(shape, dtype):
    array = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    sink = pa.BufferOutputStream()
    pa.ipc.write_tensor(pa.Tensor.from_numpy(array), sink)
    message = sink.getvalue().to_pybytes()
    header = tensor_header(shape, np.dtype(dtype))
    assert message == header + array.tobytes()
    np.testing.assert_array_equal(read_array(pa.py_buffer(message), array.dtype.str, shape), array)


def test_no_header_for_dtypes_arrow_cannot_hold():
    assert tensor_header((3,), np.dtype("complex64")) is None
