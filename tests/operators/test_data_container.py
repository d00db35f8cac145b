import hashlib
import importlib.util
import io
from pathlib import Path

import numpy as np

from oremda_lab.registry import default_registry
from oremda_lab.testing import run_operator


def test_ships_the_generated_lattice():
    out = run_operator("data_container")["data"]
    assert isinstance(out.data, bytes) and out.meta["filename"] == "lattice.tif"
    assert out.meta["size"] < 500_000
    image = run_operator("tiff_reader", {"data": out.data})["out"].data
    assert image.shape == (256, 256) and image.dtype == np.uint16
    # The file is what its generator makes (deterministic), so its origin is reproducible.
    folder = Path(default_registry().get("data_container").path) / "data"
    found = importlib.util.spec_from_file_location("make_lattice", folder / "make_lattice.py")
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    np.testing.assert_array_equal(image, module.make())
    # The bytes are the shipped file's, and another TIFF library (Pillow) decodes them the same.
    from PIL import Image

    body = (folder / "lattice.tif").read_bytes()
    assert out.data == body and out.meta["sha256"] == hashlib.sha256(body).hexdigest()
    np.testing.assert_array_equal(np.array(Image.open(io.BytesIO(body))), image)
