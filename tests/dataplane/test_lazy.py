"""Lazy data (C4): references to 4D data in files, read in parts, equal to numpy's full read."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from oremda_lab.dataplane import lazy
from oremda_lab.dataplane.lazy import Cancelled, Context, LazyArray, MemoryBudgetExceeded
from oremda_lab.worker.sdk import PortValue

SHAPE = (6, 5, 8, 7)


def scan(dtype: str = "<u2") -> np.ndarray:
    return np.random.default_rng(1).integers(0, 1000, SHAPE).astype(dtype)


def write_mib(path: Path, data: np.ndarray, header_bytes: int = 384) -> None:
    """A Merlin .mib file as the detector writes it: an ASCII header before each big-endian frame."""
    depth = {1: "U08", 2: "U16", 4: "U32"}[data.dtype.itemsize]
    frames = data.reshape(-1, *data.shape[-2:])
    with open(path, "wb") as f:
        for i, frame in enumerate(frames):
            fields = ["MQ1", f"{i + 1:06d}", f"{header_bytes:05d}", "01", str(frame.shape[1]), str(frame.shape[0]),
                      depth, "   1x1", "01", "2020-01-01 00:00:00.000000", "0.001000", "0", "0", "0",
                      "MQ1A", "2020-01-01T00:00:00.000000000Z", "1000000ns", "12"]  # fmt: skip
            header = (",".join(fields) + ",").encode()
            f.write(header + b"\0" * (header_bytes - len(header)))
            f.write(frame.astype(data.dtype.newbyteorder(">")).tobytes())


def every_format(tmp_path: Path) -> dict[str, tuple[LazyArray, np.ndarray]]:
    data = scan()
    np.save(tmp_path / "a.npy", data)
    (tmp_path / "a.raw").write_bytes(b"x" * 100 + data.astype(">u2").tobytes())
    with h5py.File(tmp_path / "a.emd", "w") as f:
        group = f.create_group("data/scan")
        group.attrs["emd_group_type"] = 1
        group.create_dataset("data", data=data, chunks=(1, 5, 8, 7))
    write_mib(tmp_path / "a.mib", data)
    return {
        "npy": (lazy.npy(tmp_path, "a.npy"), data),
        "raw": (lazy.raw(tmp_path, "a.raw", ">u2", SHAPE, offset=100), data),
        "hdf5": (lazy.hdf5(tmp_path, "a.emd", lazy.emd_datasets(tmp_path, "a.emd")[0]), data),
        "mib": (lazy.mib(tmp_path, "a.mib", scan_shape=SHAPE[:2]), data),
    }


def test_every_format_reads_what_was_written_in_any_rows(tmp_path):
    for name, (ref, data) in every_format(tmp_path).items():
        assert ref.shape == data.shape, name
        np.testing.assert_array_equal(ref.read(tmp_path), data, err_msg=name)
        np.testing.assert_array_equal(ref.read(tmp_path, 2, 5), data[2:5], err_msg=name)
        part = ref.part(1, 4)  # rows 2:4 of 6
        np.testing.assert_array_equal(part.read(tmp_path), data[2:4], err_msg=name)
        np.testing.assert_array_equal(part.read(tmp_path, 1, 2), data[3:4], err_msg=name)
        assert LazyArray.from_dict(part.to_dict()) == part
        assert part.read(tmp_path).dtype.isnative


def test_mib_agrees_with_rosettasciio(tmp_path):
    from rsciio.quantumdetector import file_reader

    data = scan()
    write_mib(tmp_path / "a.mib", data)
    reference = file_reader(str(tmp_path / "a.mib"), navigation_shape=SHAPE[1::-1])[0]["data"]
    # Frames as stored (LiberTEM's orientation); rosettasciio's file_reader flips detector y for display.
    np.testing.assert_array_equal(lazy.mib(tmp_path, "a.mib", SHAPE[:2]).read(tmp_path), np.flip(reference, -2))
    assert lazy.mib(tmp_path, "a.mib").shape == (30, 8, 7)  # 30 frames: no square scan


def test_whole_npy_is_a_read_only_map_and_the_budget_is_enforced(tmp_path):
    data = scan()
    np.save(tmp_path / "a.npy", data)
    ref = lazy.npy(tmp_path, "a.npy")
    whole = ref.whole(tmp_path, budget_bytes=data.nbytes)
    assert isinstance(whole, np.memmap) and not whole.flags.writeable
    np.testing.assert_array_equal(whole, data)
    with pytest.raises(MemoryBudgetExceeded, match="larger than the memory budget"):
        ref.whole(tmp_path, budget_bytes=data.nbytes - 1)


def test_truncated_files_are_errors_naming_the_file(tmp_path):
    data = scan()
    np.save(tmp_path / "a.npy", data)
    blob = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(blob[:-10])
    with pytest.raises(ValueError, match="cut.npy is truncated"):
        lazy.npy(tmp_path, "cut.npy")
    ref = lazy.npy(tmp_path, "a.npy")
    (tmp_path / "a.npy").write_bytes(blob[: len(blob) // 2])  # cut after the reference was made
    with pytest.raises(ValueError, match="a.npy is truncated"):
        ref.read(tmp_path, 4, 6)
    (tmp_path / "a.raw").write_bytes(data.tobytes()[:-2])  # a raw file has no header: the description says the size
    with pytest.raises(ValueError, match=f"a.raw is truncated: {data.nbytes - 2} bytes where {data.nbytes + 8} are"):
        lazy.raw(tmp_path, "a.raw", "<u2", SHAPE, offset=8)
    write_mib(tmp_path / "a.mib", data)
    ref = lazy.mib(tmp_path, "a.mib", SHAPE[:2])
    (tmp_path / "a.mib").write_bytes((tmp_path / "a.mib").read_bytes()[:-1])
    with pytest.raises(ValueError, match="truncated"):
        ref.read(tmp_path)
    (tmp_path / "bad.mib").write_bytes(b"not a mib file at all")
    with pytest.raises(ValueError, match="not a Quantum Detectors MIB"):
        lazy.mib(tmp_path, "bad.mib")


def test_paths_stay_inside_the_data_folder(tmp_path):
    (tmp_path / "inner").mkdir()
    np.save(tmp_path / "outside.npy", scan())
    with pytest.raises(ValueError, match="outside the data folder"):
        lazy.npy(tmp_path / "inner", "../outside.npy")
    ref = lazy.npy(tmp_path, "outside.npy")
    with pytest.raises(ValueError, match="outside the data folder"):
        LazyArray("../outside.npy", "npy", ref.dtype, ref.stored_shape, ref.offset).read(tmp_path / "inner")


def _sum_and_image(inputs):
    frames = inputs["data"].data
    return {"total": frames.sum(axis=0).astype(np.int64), "image": frames.sum(axis=(-2, -1)), "name": b"x"}


PARALLEL = {"split": {"port": "data", "axis": 0},
            "join": {"total": "sum", "image": {"method": "concatenate", "axis": 0}, "name": "first"}}  # fmt: skip


def test_call_runs_in_bounded_chunks_and_joins_like_the_whole(tmp_path):
    data = scan()
    np.save(tmp_path / "a.npy", data)
    ref = lazy.npy(tmp_path, "a.npy")
    seen, progress = [], []

    def invoke(inputs):
        seen.append(inputs["data"].data.shape[0])
        return _sum_and_image(inputs)

    row = ref.row_bytes
    context = Context(tmp_path, budget_bytes=2 * row * lazy.CHUNK_SHARE, progress=lambda f, m: progress.append(f))
    out = lazy.call(invoke, {"data": PortValue(ref, {"a": 1})}, PARALLEL, context, PortValue)
    assert seen == [2, 2, 2]  # two rows per chunk
    assert progress == pytest.approx([1 / 3, 2 / 3, 1])
    np.testing.assert_array_equal(out["total"].data, data.sum(axis=0))
    np.testing.assert_array_equal(out["image"].data, data.sum(axis=(-2, -1)))
    assert out["name"].data == b"x"
    part = lazy.call(invoke, {"data": PortValue(ref.part(1, 2), {})}, PARALLEL, context, PortValue)
    np.testing.assert_array_equal(part["image"].data, data[3:].sum(axis=(-2, -1)))


def test_call_stops_between_chunks_when_cancelled(tmp_path):
    np.save(tmp_path / "a.npy", scan())
    ref = lazy.npy(tmp_path, "a.npy")
    calls = []
    context = Context(tmp_path, budget_bytes=ref.row_bytes * lazy.CHUNK_SHARE, cancelled=lambda: len(calls) >= 2)
    with pytest.raises(Cancelled, match="after 2/6 chunks"):
        lazy.call(lambda i: calls.append(1) or _sum_and_image(i), {"data": PortValue(ref, {})}, PARALLEL, context,
                  PortValue)  # fmt: skip


def test_a_non_parallel_operator_gets_the_whole_array_only_within_the_budget(tmp_path):
    data = scan()
    np.save(tmp_path / "a.npy", data)
    ref = lazy.npy(tmp_path, "a.npy")
    out = lazy.call(_sum_and_image, {"data": PortValue(ref, {})}, None, Context(tmp_path, data.nbytes), PortValue)
    np.testing.assert_array_equal(out["total"], data.sum(axis=0))
    with pytest.raises(MemoryBudgetExceeded, match=r"a.npy \(.*\) is larger than the memory budget"):
        lazy.call(_sum_and_image, {"data": PortValue(ref, {})}, None, Context(tmp_path, 1000), PortValue)
