"""How lazy data is read: few large reads in the workers, and no other read of the file by the kernel.

Read throughput on data larger than memory depends on both (docs/scale.md, "Throughput").
The counts come from ``/proc/<pid>/io`` (Linux): ``rchar`` (bytes through read calls,
page cache hits included) and ``syscr`` (read calls).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oremda_lab.dataplane import lazy
from oremda_lab.engine import Engine
from oremda_lab.spec.pipeline import Pipeline

pytestmark = pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/<pid>/io (Linux)")


def io_counts() -> dict[str, int]:
    """This process's I/O counters (all its threads)."""
    return {k: int(v) for k, v in (line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())}


def patterns(rows: int) -> np.ndarray:
    return np.random.default_rng(2).integers(0, 1000, (rows, 16, 64, 64)).astype("<u2")


def test_a_chunk_is_read_with_a_few_large_read_calls(tmp_path):
    data = patterns(64)  # 8 MiB
    np.save(tmp_path / "scan.npy", data)
    ref, scratch = lazy.npy(tmp_path, "scan.npy"), lazy.Scratch()
    ref.read(tmp_path, 0, 1, scratch)  # imports and the header read out of the way
    before = io_counts()
    chunk = ref.read(tmp_path, 0, 64, scratch)
    after = io_counts()
    np.testing.assert_array_equal(chunk, data)
    assert after["rchar"] - before["rchar"] >= data.nbytes  # through read calls, not a memory map
    assert after["syscr"] - before["syscr"] <= 4  # one readinto of the whole chunk, not a read per block


def test_a_run_on_a_lazy_input_leaves_its_bytes_to_the_workers(tmp_path, monkeypatch):
    """The kernel process reads the header, never the data: the workers read each byte once."""
    monkeypatch.setenv("OREMDA_PARALLEL_WORKERS", "2")
    data = patterns(256)  # 32 MiB
    np.save(tmp_path / "scan.npy", data)
    np.save(tmp_path / "small.npy", data[:2])
    doc = Pipeline.from_json({
        "nodes": [{"id": "read", "image": "oremda/npy_reader", "params": {"filename": "small.npy"}},
                  {"id": "vd", "image": "oremda/virtual_detector", "params": {"outer_radius": 20}}],
        "edges": [{"type": "data", "from": {"id": "read", "port": "data"}, "to": {"id": "vd", "port": "data"}}],
    })  # fmt: skip
    with Engine("local", tmp_path) as engine:
        assert engine.run(doc).ok  # workers started, code imported
        doc.set_param("read", "filename", "scan.npy")
        before = io_counts()
        run = engine.run(doc)
        read = io_counts()["rchar"] - before["rchar"]
        assert run.ok, run.errors
        assert run.outputs["vd"]["image"].data.shape == data.shape[:2]
    assert read < data.nbytes // 8, f"the kernel process read {read} bytes of a {data.nbytes}-byte lazy input"
