"""4D-STEM data larger than memory (issue 12): lazy readers, partitions on several workers, the budget.

Every dataset is generated here, small, in each format; the reference is numpy on the
fully loaded array (the virtual image: the masked sum of each pattern; the Bragg
vector map: the operator's own function on the whole array in memory, so what is
tested is reading in parts and joining).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

from oremda_lab.engine import Engine
from oremda_lab.registry import default_registry
from oremda_lab.spec.pipeline import Pipeline
from oremda_lab.testing import stray_objects, supersede_midway

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataplane"))
from test_lazy import write_mib  # noqa: E402

SCAN, DETECTOR = (12, 10), 32


def dataset(seed: int = 0, scan: tuple[int, int] = SCAN, detector: int = DETECTOR) -> np.ndarray:
    """Diffraction patterns: a zero beam and a square lattice of weaker disks, scan-dependent, Poisson noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:detector, :detector] - detector // 2
    clean = np.zeros((*scan, detector, detector), np.float32)
    for gy in (-8, 0, 8):
        for gx in (-8, 0, 8):
            disk = ((y - gy) ** 2 + (x - gx) ** 2 <= 9).astype(np.float32)
            weight = 100.0 if gy == gx == 0 else rng.uniform(1, 5, scan).astype(np.float32)[..., None, None]
            clean += weight * disk
    return rng.poisson(clean).astype(np.uint16)


def virtual_image(data: np.ndarray, inner: float, outer: float) -> np.ndarray:
    c = data.shape[-1] // 2
    y, x = np.mgrid[: data.shape[-2], : data.shape[-1]]
    r2 = (y - c) ** 2 + (x - c) ** 2
    mask = (r2 <= outer**2) & (r2 > inner**2 if inner > 0 else True)
    return (data.astype(np.float64) * mask).sum(axis=(-2, -1))


def bragg_reference(data: np.ndarray) -> np.ndarray:
    spec = default_registry().get("bragg_vector_map")
    found = importlib.util.spec_from_file_location("bvm_reference", Path(spec.path) / "run.py")
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    params = spec.resolved_params({})
    return module.bragg_map(data, params["template_radius"], params["threshold"], params["min_distance"],
                            params["max_peaks"], params["edge"], params["relative_to"])  # fmt: skip


def write(folder: Path, fmt: str, data: np.ndarray) -> tuple[str, dict]:
    """The file of ``data`` in ``fmt`` and the reader node that reads it."""
    if fmt == "npy":
        np.save(folder / "scan.npy", data)
        return "scan.npy", {"image": "oremda/npy_reader", "params": {"filename": "scan.npy"}, "port": "data"}
    if fmt == "emd":
        with h5py.File(folder / "scan.emd", "w") as f:
            group = f.create_group("data/scan")
            group.attrs["emd_group_type"] = 1
            group.create_dataset("data", data=data, chunks=(1, *data.shape[1:]), compression="gzip")
        return "scan.emd", {"image": "oremda/ncem_reader", "params": {"filename": "scan.emd"}, "port": "image"}
    write_mib(folder / "scan.mib", data)
    params = {"filename": "scan.mib", "scan_shape": list(data.shape[:2])}
    return "scan.mib", {"image": "oremda/ncem_reader", "params": params, "port": "image"}


def pipeline(reader: dict, *operators: tuple[str, str, dict]) -> Pipeline:
    """A reader feeding each ``(id, operator, params)``."""
    nodes = [{"id": "read", "image": reader["image"], "params": reader["params"]}]
    edges = []
    for node, name, params in operators:
        nodes.append({"id": node, "image": f"oremda/{name}", "params": params})
        edges.append(
            {"type": "data", "from": {"id": "read", "port": reader["port"]}, "to": {"id": node, "port": "data"}}
        )
    return Pipeline.from_json({"nodes": nodes, "edges": edges})


@pytest.fixture
def two_workers(monkeypatch):
    monkeypatch.setenv("OREMDA_PARALLEL_WORKERS", "2")


@pytest.mark.parametrize("fmt", ["npy", "emd", "mib"])
def test_partitions_on_local_workers_equal_numpy_on_the_whole_array(tmp_path, two_workers, fmt):
    data = dataset()
    _, reader = write(tmp_path, fmt, data)
    doc = pipeline(reader, ("vd", "virtual_detector", {"inner_radius": 2, "outer_radius": 10}),
                   ("bvm", "bragg_vector_map", {}))  # fmt: skip
    events = []
    # 64 KiB chunks per worker: several chunks per partition
    with Engine("local", tmp_path, shm_bytes=2 * 8 * 64 << 10) as engine:
        engine.subscribe(events.append)
        run = engine.run(doc)
        assert run.ok, run.errors
        np.testing.assert_allclose(run.outputs["vd"]["image"].data, virtual_image(data, 2, 10), rtol=1e-6)
        np.testing.assert_allclose(run.outputs["bvm"]["out"].data, bragg_reference(data), rtol=1e-5)
        assert run.outputs["read"][reader["port"]].data is None or not isinstance(
            run.outputs["read"][reader["port"]].data, np.ndarray
        )  # the reader's output is a reference, never the bytes
        assert engine.runtime.serves("vd~p1", engine.registry.get("virtual_detector"))  # a second worker ran
        assert not stray_objects(engine)
    progress = [(e.progress, e.message) for e in events if e.node == "vd" and e.progress is not None]
    fractions = [p for p, _ in progress]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert progress[-1][1] == "2/2 partitions"


def test_a_non_parallel_operator_asking_for_too_much_gets_a_clear_error(tmp_path):
    data = dataset()
    _, reader = write(tmp_path, "npy", data)
    doc = Pipeline.from_json({
        "nodes": [{"id": "read", "image": "oremda/npy_reader", "params": reader["params"]},
                  {"id": "hist", "image": "oremda/histograms", "params": {}}],
        "edges": [{"type": "data", "from": {"id": "read", "port": "data"}, "to": {"id": "hist", "port": "in"}}],
    })  # fmt: skip
    with Engine("local", tmp_path, shm_bytes=data.nbytes // 2) as engine:
        run = engine.run(doc)
        assert run.nodes["read"].status == "done"
        assert run.nodes["hist"].status == "error"
        assert "larger than the memory budget" in run.errors["hist"]["message"]
        assert not stray_objects(engine)


@pytest.mark.parametrize("fmt", ["npy", "mib"])
def test_a_truncated_file_is_one_node_error_and_leaks_nothing(tmp_path, fmt):
    name, reader = write(tmp_path, fmt, dataset())
    doc = pipeline(reader, ("vd", "virtual_detector", {}))
    with Engine("local", tmp_path) as engine:
        assert engine.run(doc).ok
        blob = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(blob[: len(blob) * 3 // 4])
        run = engine.run(doc)
        failed = {n: r.status for n, r in run.nodes.items() if r.status not in ("done", "cached")}
        errors = [n for n, s in failed.items() if s == "error"]
        assert len(errors) == 1 and "truncated" in run.errors[errors[0]]["message"], run.errors
        assert not stray_objects(engine)


def _peak_rss_growth(pids: list[int], before: dict[int, int]) -> int:
    total = 0
    for pid in pids:
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        total += int(status["VmHWM"].split()[0]) * 1024 - before[pid]
    return total


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # freed meanwhile
        return 0


def test_a_dataset_larger_than_the_budget_runs_within_it(tmp_path, two_workers):
    """64 MiB of data, a 16 MiB budget: workers' peak memory growth plus shared memory stays within it."""
    data = dataset(scan=(64, 32), detector=64, seed=1)
    assert data.nbytes == 16 << 20
    big = np.concatenate([data] * 4)  # 256 x 32 scan, 64 MiB
    np.save(tmp_path / "scan.npy", big)
    np.save(tmp_path / "small.npy", data[:4])
    budget = 16 << 20
    doc = pipeline({"image": "oremda/npy_reader", "params": {"filename": "small.npy"}, "port": "data"},
                   ("vd", "virtual_detector", {"outer_radius": 20}))  # fmt: skip
    with Engine("local", tmp_path, shm_bytes=budget) as engine:
        assert engine.run(doc).ok  # warm workers, every module imported
        workers = [w for slot, w in engine.runtime._workers.items() if slot.startswith("vd")]
        pids = [w.handle.pid for w in workers]
        assert len(pids) == 2
        before = {}
        for pid in pids:
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak RSS := current RSS
            status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
            before[pid] = int(status["VmRSS"].split()[0]) * 1024
        doc.set_param("read", "filename", "scan.npy")
        shm, stop = [0], threading.Event()

        def sample() -> None:  # the session's shared memory (objects and pool) during the run
            while not stop.wait(0.01):
                files = [*(engine.arena.path / "objects").iterdir(), *(engine.arena.path / "pool").iterdir()]
                shm[0] = max(shm[0], sum(_size(f) for f in files))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            run = engine.run(doc)
        finally:
            stop.set()
            sampler.join()
        assert run.ok, run.errors
        np.testing.assert_allclose(run.outputs["vd"]["image"].data, virtual_image(big, 0, 20), rtol=1e-6)
        growth = _peak_rss_growth(pids, before)
        print(f"workers' peak RSS growth {growth / 2**20:.1f} MiB, session shared memory {shm[0] / 2**20:.2f} MiB")
        assert growth + shm[0] <= budget, (growth, shm[0])
        assert growth < big.nbytes // 8


def test_a_newer_run_cancels_a_long_partitioned_run(tmp_path, two_workers):
    data = dataset(scan=(256, 48), detector=64, seed=2)  # 96 MiB: 256 scan rows of 384 KiB
    np.save(tmp_path / "scan.npy", data)
    np.save(tmp_path / "small.npy", data[:4])
    reader = {"image": "oremda/npy_reader", "params": {"filename": "scan.npy"}, "port": "data"}
    doc = pipeline(reader, ("bvm", "bragg_vector_map", {}))
    # chunks of one scan row (48 patterns): 128 chunks per partition
    with Engine("local", tmp_path, shm_bytes=2 * 8 * 384 << 10) as engine:
        old, second, events = supersede_midway(engine, doc, "bvm", ("read", "filename", "small.npy"), timeout=60)
        assert old.superseded
        assert old.nodes["bvm"].status == "error" and "Cancelled" in old.nodes["bvm"].error["message"]
        old_progress = [e.progress for e in events if e.node == "bvm" and e.run_id == old.id and e.progress]
        assert max(old_progress) < 0.9  # it stopped early, not at the end
        new = second.result(120)
        assert new.ok, new.errors
        np.testing.assert_allclose(new.outputs["bvm"]["out"].data, bragg_reference(data[:4]), rtol=1e-5)
        assert not list((engine.arena.path / "cancel").iterdir())  # markers removed
        assert not stray_objects(engine)


def test_the_cli_prints_a_partitioned_node_s_progress(tmp_path, two_workers, capsys, monkeypatch):
    import json

    from oremda_lab.cli import main

    _, reader = write(tmp_path, "npy", dataset())
    (tmp_path / "p.json").write_text(json.dumps(pipeline(reader, ("vd", "virtual_detector", {})).to_json()))
    monkeypatch.setenv("OREMDA_SHM_BUDGET", str(2 * 8 * 64 << 10))  # several chunks per partition
    assert main(["run", str(tmp_path / "p.json"), "--data", str(tmp_path), "--out", str(tmp_path / "out"),
                 "--runtime", "local"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert any(line.endswith("vd: running 100% 2/2 partitions") for line in lines), lines


def test_the_digitalmicrograph_reference_reads_rows_as_rosettasciio_does(mos2_dm3):
    """No 4D DM4 file can be made without Gatan's software: the lazy DM path is checked on a real 2D DM3 image."""
    from rsciio.digitalmicrograph import file_reader

    from oremda_lab.dataplane import lazy

    whole = file_reader(str(mos2_dm3))[0]["data"]
    ref = lazy.dm4(mos2_dm3.parent, mos2_dm3.name)
    assert ref.shape == whole.shape and ref.format == "dm4"
    np.testing.assert_array_equal(
        ref.part(1, 3).read(mos2_dm3.parent), whole[ref.part(1, 3).rows[0] : ref.part(1, 3).rows[1]]
    )
    np.testing.assert_array_equal(ref.read(mos2_dm3.parent, 5, 9), whole[5:9])


PICKY = """
import time

import numpy as np

from oremda_lab.worker.sdk import operator


@operator
def picky(inputs, params):
    data = inputs["data"].data
    if data.max() == 65535:
        raise ValueError("a saturated pattern")
    time.sleep(0.05)
    return {"total": data.sum(axis=0, dtype=np.float64)}
"""


def test_a_failed_partition_fails_its_node_and_leaves_nothing(tmp_path, two_workers):
    from oremda_lab.registry import Registry
    from oremda_lab.testing import write_operator

    description = {
        "name": "picky", "version": "1.0.0", "entrypoint": "run",
        "ports": {"input": {"data": {"type": "data"}}, "output": {"total": {"type": "data"}}},
        "parallel": {"split": {"port": "data", "axis": 0}, "join": {"total": "sum"}},
    }  # fmt: skip
    write_operator(tmp_path / "ops", description, PICKY)
    registry = Registry([tmp_path / "ops"])
    data = dataset()
    np.save(tmp_path / "good.npy", data)
    data[-1, -1, 0, 0] = 65535  # the last partition's last chunk fails
    np.save(tmp_path / "bad.npy", data)
    doc = {
        "nodes": [{"id": "read", "image": "oremda/npy_reader", "params": {"filename": "good.npy"}},
                  {"id": "p", "image": "oremda/picky", "params": {}}],
        "edges": [{"type": "data", "from": {"id": "read", "port": "data"}, "to": {"id": "p", "port": "data"}}],
    }  # fmt: skip
    with Engine("local", tmp_path, registry=registry, shm_bytes=2 * 8 * 64 << 10) as engine:
        good = engine.run(Pipeline.from_json(doc, catalog=registry))
        assert good.ok, good.errors
        np.testing.assert_allclose(good.outputs["p"]["total"].data, dataset().sum(axis=0, dtype=np.float64))
        doc["nodes"][0]["params"]["filename"] = "bad.npy"
        bad = engine.run(Pipeline.from_json(doc, catalog=registry))
        assert bad.nodes["p"].status == "error"
        assert "a saturated pattern" in bad.errors["p"]["message"]
        assert not stray_objects(engine)
        assert not list((engine.arena.path / "cancel").iterdir())
