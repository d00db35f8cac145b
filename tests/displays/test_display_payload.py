"""The editor's picture payload (``oremda_lab.widget._display``) on real MoS2 data.

References are computed independently here: block means with ``reshape(...).mean``
in float64, and the uint8 scaling by its definition, then the payload's bytes are
read back the way the browser reads them (``width * height`` grey levels, row-major).
"""

import time

import numpy as np
import pytest

from oremda_lab.spec.pipeline import Node
from oremda_lab.widget._display import bin_factor, binned, encode
from oremda_lab.worker.sdk import PortValue


def _block_mean(image: np.ndarray, f: int) -> np.ndarray:
    h, w = (image.shape[0] // f) * f, (image.shape[1] // f) * f
    return image[:h, :w].astype(np.float64).reshape(h // f, f, w // f, f).mean(axis=(1, 3))


@pytest.mark.parametrize("factor", [2, 3, 7, 8])
@pytest.mark.parametrize("crop", [(1024, 1024), (1000, 997), (517, 1024)])
def test_binned_is_the_block_mean(mos2_image, factor, crop):
    image = mos2_image[: crop[0], : crop[1]]
    for data in (image, image.astype(np.float32), image.astype(np.uint32)):
        out = binned(data, factor)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, _block_mean(data, factor), rtol=1e-6)


def test_binned_4096_tiled_mos2(mos2_image):
    big = np.tile(mos2_image.astype(np.float32), (4, 4))
    assert bin_factor(big.shape, 512) == 8
    np.testing.assert_allclose(binned(big, 8), _block_mean(big, 8), rtol=1e-6)


def test_picture_payload_round_trip(mos2_image):
    # What the browser draws: width x height uint8 levels of the block-averaged image,
    # scaled linearly between the min/max the picture operator measured.
    image = mos2_image.astype(np.float32)
    lo, hi = float(image.min()), float(image.max())
    before = time.time() * 1000
    payload = encode(
        Node("v", type="display", display="2D"), [PortValue(image, {"kind": "picture", "min": lo, "max": hi})], 4
    )
    assert before <= payload["encoded_at"] <= time.time() * 1000  # the wall clock the page compares with
    assert payload["revision"] == 4
    (layer,) = payload["layers"]
    assert (layer["width"], layer["height"], layer["scale"], layer["shape"]) == (512, 512, 2, [1024, 1024])
    assert isinstance(layer["pixels"], bytes)  # a binary comm buffer, not JSON or base64
    drawn = np.frombuffer(layer["pixels"], np.uint8).reshape(layer["height"], layer["width"])
    expected = np.clip((_block_mean(image, 2) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    assert np.abs(drawn.astype(int) - expected).max() <= 1  # float32 vs float64 rounding at a level's edge
    assert np.mean(drawn == expected) > 0.999
