"""How lazy data is read: few large reads into a kept buffer in the workers, and no other read by the kernel.

Read throughput on data larger than memory depends on both (docs/scale.md, "Throughput").
The counts come from ``/proc/<pid>/io`` (Linux): ``rchar`` (bytes through read calls,
page cache hits included) and ``syscr`` (read calls).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from oremda_lab.dataplane import lazy
from oremda_lab.dataplane.lazy import Context
from oremda_lab.engine import Engine
from oremda_lab.spec.pipeline import Pipeline
from oremda_lab.worker.sdk import PortValue

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


def test_back_to_back_calls_reuse_one_chunk_buffer_then_give_it_back(tmp_path, monkeypatch):
    """Partitions of one node read into the memory the previous one faulted in; idle, it is released."""
    monkeypatch.setattr(lazy, "KEEP_SECONDS", 0.2)
    data = patterns(8)
    np.save(tmp_path / "scan.npy", data)
    ref = lazy.npy(tmp_path, "scan.npy")
    parallel = {"split": {"port": "data", "axis": 0}, "join": {"image": "concatenate"}}
    context = Context(tmp_path, budget_bytes=2 * ref.row_bytes * lazy.CHUNK_SHARE)  # two rows per chunk
    addresses: list[int] = []

    def image(inputs, pause: float = 0.0):
        addresses.append(inputs["data"].data.__array_interface__["data"][0])
        time.sleep(pause)
        return {"image": inputs["data"].data.sum(axis=(-2, -1))}

    def run(part: int, pause: float = 0.0) -> np.ndarray:
        source = PortValue(ref.part(part, 2), {})
        return lazy.call(lambda i: image(i, pause), {"data": source}, parallel, context, PortValue)["image"].data

    first, second = run(0), run(1)
    np.testing.assert_array_equal(np.concatenate([first, second]), data.sum(axis=(-2, -1)))
    assert len(addresses) == 4 and len(set(addresses)) == 1  # every chunk of both calls in one buffer
    assert lazy._KEPT.scratch.buffer.nbytes == 2 * ref.row_bytes
    time.sleep(0.5)
    assert lazy._KEPT.scratch.buffer.nbytes == 0  # idle longer than KEEP_SECONDS: given back

    addresses.clear()  # two calls at once (threads of one process) never share a buffer
    with ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda p: run(p, pause=0.1), (0, 1)))
    np.testing.assert_array_equal(np.concatenate(both), data.sum(axis=(-2, -1)))
    assert len(set(addresses)) == 2
