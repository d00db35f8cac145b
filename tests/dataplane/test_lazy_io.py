"""How lazy data is read: few large reads into a kept buffer in the workers, drop-behind for files larger
than memory, and no other read by the kernel.

Read throughput on data larger than memory depends on both (docs/scale.md, "Throughput").
The counts come from ``/proc/<pid>/io`` (Linux): ``rchar`` (bytes through read calls,
page cache hits included) and ``syscr`` (read calls).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from oremda_lab.dataplane import lazy
from oremda_lab.dataplane.lazy import Context
from oremda_lab.engine import Engine
from oremda_lab.spec.pipeline import Pipeline
from oremda_lab.worker.sdk import PortValue

pytestmark = pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/<pid>/io (Linux)")


PARALLEL = {"split": {"port": "data", "axis": 0}, "join": {"image": "concatenate"}}


def evict(path: Path) -> None:
    """Drop ``path`` from the page cache (nothing of it is dirty: written and closed by numpy)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


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
    context = Context(tmp_path, budget_bytes=2 * ref.row_bytes * lazy.CHUNK_SHARE)  # two rows per chunk
    addresses: list[int] = []

    def image(inputs, pause: float = 0.0):
        addresses.append(inputs["data"].data.__array_interface__["data"][0])
        time.sleep(pause)
        return {"image": inputs["data"].data.sum(axis=(-2, -1))}

    def run(part: int, pause: float = 0.0) -> np.ndarray:
        source = PortValue(ref.part(part, 2), {})
        return lazy.call(lambda i: image(i, pause), {"data": source}, PARALLEL, context, PortValue)["image"].data

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


def resident(path: Path, offset: int, length: int) -> tuple[int, int]:
    """Pages of ``path``'s bytes ``[offset, offset + length)`` in the page cache (mincore(2)), of how many."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    page = mmap.PAGESIZE
    first = offset // page * page
    length += offset - first
    with open(path, "rb") as f, mmap.mmap(f.fileno(), length, prot=mmap.PROT_READ, offset=first) as mapped:
        pages = np.zeros(-(-length // page), np.uint8)
        address = np.frombuffer(mapped, np.uint8).ctypes.data
        assert libc.mincore(ctypes.c_void_p(address), length, pages.ctypes.data) == 0, ctypes.get_errno()
    return int((pages & 1).sum()), pages.size


def test_a_file_larger_than_memory_leaves_the_page_cache_as_it_is_read(tmp_path):
    """Drop-behind for a file that cannot stay cached; a file that fits stays cached for a re-run."""
    available = lazy.meminfo()["MemAvailable"]
    rows = available // (16 * 64 * 64 * 2) + 1024  # a sparse file larger than the memory available now
    big = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype="<u2", shape=(rows, 16, 64, 64))
    del big  # all holes: no disk used; holes read as zeros and are cached like data
    data = patterns(64)
    np.save(tmp_path / "small.npy", data)
    context = Context(tmp_path, budget_bytes=16 * data[0].nbytes * lazy.CHUNK_SHARE)  # chunks of 16 rows
    fds = len(os.listdir("/proc/self/fd"))
    # Of a file larger than memory, at most the page shared with the next rows stays cached.
    for name, expected, stays in (("big.npy", np.zeros((64, 16)), False), ("small.npy", data.sum(axis=(-2, -1)), True)):
        ref = lazy.npy(tmp_path, name)
        assert lazy.stays_cached((tmp_path / name).stat().st_size) is stays
        evict(tmp_path / name)
        part = replace(ref, rows=(0, 64))
        out = lazy.call(lambda i: {"image": i["data"].data.sum(axis=(-2, -1))}, {"data": PortValue(part, {})},
                        PARALLEL, context, PortValue)["image"].data  # fmt: skip
        np.testing.assert_array_equal(out, expected)
        pages, spanned = resident(tmp_path / name, ref.offset, part.nbytes)
        if stays:
            assert pages == spanned  # every page read is still cached
        else:
            assert pages <= 1, f"{pages} pages of a file larger than memory stayed in the page cache"
    assert len(os.listdir("/proc/self/fd")) == fds  # every file the reads opened is closed
