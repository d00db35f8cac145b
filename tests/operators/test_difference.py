import numpy as np
import pytest

from oremda_lab.testing import run_operator


def test_a_minus_b_goes_negative_for_unsigned_input():
    a = np.array([[1, 2]], dtype=np.uint16)
    b = np.array([[3, 1]], dtype=np.uint16)
    out = run_operator("difference", {"a": a, "b": b})["diff"]
    np.testing.assert_array_equal(out.data, [[-2, 1]])


def test_shape_mismatch_is_reported():
    with pytest.raises(RuntimeError, match="do not broadcast"):
        run_operator("difference", {"a": np.zeros((3, 2)), "b": np.zeros((4, 2))})


def test_broadcasts_rows_and_keeps_float32_and_a_meta():
    from oremda_lab.worker.sdk import PortValue

    a = PortValue(np.array([[1.5, 2.5, 3.5], [4.5, 5.5, 6.5]], np.float32), {"title": "peaks"})
    out = run_operator("difference", {"a": a, "b": np.array([0.5, 1.5, 2.5], np.float32)})["diff"]
    np.testing.assert_array_equal(out.data, [[1, 1, 1], [4, 4, 4]])
    assert out.data.dtype == np.float32 and out.meta == {"title": "peaks"}
