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
