"""raw_reader: C-order binary elements of a given dtype, shape and header offset, on the local runtime.

Every file is written here from a numpy array (``tobytes`` after a header of junk bytes);
the reference is that array.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from oremda_lab.dataplane import lazy
from oremda_lab.engine import Engine
from oremda_lab.spec.pipeline import Pipeline
from oremda_lab.testing import run_operator, stray_objects


def write_raw(folder: Path, name: str, array: np.ndarray, offset: int = 0) -> dict:
    """``array``'s bytes after ``offset`` header bytes; the reader params that describe them."""
    (folder / name).write_bytes(b"\xa5" * offset + array.tobytes())
    return {"filename": name, "dtype": array.dtype.str, "shape": list(array.shape), "offset": offset}


def readers(nodes: dict[str, dict], *consumers: dict, edges: tuple = ()) -> Pipeline:
    """One raw_reader node per ``id: params``, plus ``consumers`` and ``edges``."""
    return Pipeline.from_json({
        "nodes": [*({"id": n, "image": "oremda/raw_reader", "params": p} for n, p in nodes.items()), *consumers],
        "edges": list(edges),
    })  # fmt: skip


ARRAYS = {  # node id -> (array, header bytes)
    "big_endian_float": (np.linspace(-1, 1, 35, dtype=">f4").reshape(5, 7), 0),
    "uint16_header": (np.arange(60, dtype="<u2").reshape(3, 4, 5) * 1000, 128),
    "big_endian_int64_odd_header": (np.arange(-5, 5, dtype=">i8") << 40, 3),
    "bytes": (np.arange(16, dtype="u1").reshape(4, 4), 1),
    "big_endian_complex": ((np.arange(6) + 1j * np.arange(6)[::-1]).astype(">c8").reshape(2, 3), 0),
}


def test_reads_what_numpy_wrote_in_native_byte_order(tmp_path):
    params = {node: write_raw(tmp_path, f"{node}.raw", a, offset) for node, (a, offset) in ARRAYS.items()}
    with Engine("local", tmp_path) as engine:
        run = engine.run(readers(params))
        assert run.ok, run.errors
        for node, (array, offset) in ARRAYS.items():
            out = run.outputs[node]["data"]
            assert out.data.dtype.isnative and out.data.dtype == array.dtype.newbyteorder("="), node
            np.testing.assert_array_equal(out.data, array)
            assert out.meta == {"filename": f"{node}.raw", "shape": list(array.shape),
                                "dtype": array.dtype.name, "offset": offset}  # fmt: skip
        assert not stray_objects(engine)


def scan() -> np.ndarray:
    """A 9 x 6 scan of 16 x 16 patterns: a bright disk whose intensity varies with the position, noise."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[:16, :16] - 8
    disk = (y**2 + x**2 <= 16).astype(np.float64)
    weight = rng.uniform(100, 1000, (9, 6))[..., None, None]
    return rng.poisson(weight * disk + 5).astype(">u2")


def test_4d_data_is_a_reference_that_virtual_detector_reads_in_parts(tmp_path, monkeypatch):
    monkeypatch.setenv("OREMDA_PARALLEL_WORKERS", "2")
    data = scan()
    params = write_raw(tmp_path, "scan.raw", data, offset=512)
    detector = {"inner_radius": 1, "outer_radius": 5}
    vd = {"id": "vd", "image": "oremda/virtual_detector", "params": detector}
    edge = {"type": "data", "from": {"id": "read", "port": "data"}, "to": {"id": "vd", "port": "data"}}
    in_memory = run_operator("virtual_detector", {"data": data.astype("=u2")}, detector)["image"].data
    # 16 KiB chunks per worker (3 patterns): several chunks in each of the two partitions
    with Engine("local", tmp_path, shm_bytes=2 * 8 * (16 << 10)) as engine:
        run = engine.run(readers({"read": params}, vd, edges=(edge,)))
        assert run.ok, run.errors
        ref = lazy.from_wire(run.nodes["read"].outputs["data"])
        assert ref == lazy.LazyArray("scan.raw", "raw", ">u2", data.shape, 512)
        assert run.outputs["read"]["data"].data is None  # a reference travels, never the bytes
        np.testing.assert_array_equal(ref.read(tmp_path), data)
        np.testing.assert_array_equal(run.outputs["vd"]["image"].data, in_memory)
        assert engine.runtime.serves("vd~p1", engine.registry.get("virtual_detector"))  # a second partition ran
        assert not stray_objects(engine)


def test_every_mistake_is_its_own_node_error_and_leaks_nothing(tmp_path):
    (tmp_path / "data").mkdir()
    good = write_raw(tmp_path / "data", "scan.raw", np.zeros((2, 3, 4, 5), "<u2"), offset=16)  # 256 bytes
    write_raw(tmp_path, "outside.raw", np.zeros(4, "u1"))
    mistakes = {  # node id -> (params changed, what the error says)
        "short": (
            {"dtype": "<u4"},
            r"scan.raw is 256 bytes, shorter than the 496 that offset 16 \+ shape "
            r"\[2, 3, 4, 5\] of <u4 \(4 bytes each\) need",
        ),
        "short_by_header": ({"offset": 17}, "shorter than the 257 that offset 17"),
        "unknown_dtype": ({"dtype": "<u3"}, "dtype '<u3' is not a numeric numpy dtype"),
        "string_dtype": ({"dtype": "S4"}, "dtype 'S4' is not a numeric numpy dtype"),
        "record_dtype": ({"dtype": "u2,u2"}, "dtype 'u2,u2' is not a numeric numpy dtype"),
        "zero_axis": ({"shape": [2, 0, 4, 5]}, r"shape \[2, 0, 4, 5\] must be a list of positive integers"),
        "negative_axis": ({"shape": [-2, 3]}, "must be a list of positive integers"),
        "fractional_axis": ({"shape": [2.5, 2]}, "must be a list of positive integers"),
        "no_axes": ({"shape": []}, "must be a list of positive integers"),
        "missing": ({"filename": "nothing.raw"}, "data file 'nothing.raw' not found in the data folder"),
        "outside": ({"filename": "../outside.raw"}, "'../outside.raw' is outside the data folder"),
    }
    doc = readers({"ok": good} | {node: good | change for node, (change, _) in mistakes.items()})
    with Engine("local", tmp_path / "data") as engine:
        run = engine.run(doc)
        assert run.nodes["ok"].status == "done"
        assert set(run.errors) == set(mistakes)
        for node, (_, says) in mistakes.items():
            assert re.search(says, run.errors[node]["message"]), (node, run.errors[node]["message"])
        assert not stray_objects(engine)


def test_a_negative_offset_never_runs(tmp_path):
    params = write_raw(tmp_path, "scan.raw", np.zeros(4, "u1")) | {"offset": -1}
    with Engine("local", tmp_path) as engine:
        run = engine.run(readers({"read": params}))
        assert run.nodes["read"].status == "error"
        assert "below the minimum 0" in run.errors["read"]["message"]
