"""4D-STEM operators (virtual_detector, bragg_vector_map) on a simulated MoS2 dataset.

The dataset is simulated with abTEM (multislice, PyPI) at test time and cached
outside the repository (``OREMDA_TEST_CACHE``, default ``~/.cache/oremda-lab``):
monolayer 2H-MoS2 (``ase.build.mx2``), 80 kV, 5 mrad probe, a 16 x 16 scan over one
orthogonal unit cell, 64 x 64 detector pixels of ~1.3 mrad, Poisson noise for
2e5 electrons per pattern. Without abTEM a physically motivated synthetic dataset
(same geometry, Bragg disks of a hexagonal lattice with scan-dependent intensities)
is used instead, and the source is recorded beside the cache file. The same data feed
the MPI equality tests, the comparison with LiberTEM and ``bench/bench_mpi.py``.
"""

import json
import os
import uuid
from pathlib import Path

import numpy as np
import pytest

from oremda_lab.dataplane.arena import Arena
from oremda_lab.dataplane.refs import ObjectRef
from oremda_lab.registry import default_registry
from oremda_lab.runtime import make_runtime
from oremda_lab.runtime.base import Task
from oremda_lab.runtime.local import LocalRuntime
from oremda_lab.testing import run_operator

pytestmark = pytest.mark.mpi

ENERGY = 80e3  # eV
WAVELENGTH = 0.04176  # Angstrom at 80 keV (relativistic)
A_MOS2 = 3.18  # Angstrom
SEMIANGLE = 5.0  # mrad: disks stay apart (the {100} spacing is 15.2 mrad)
DOSE = 2e5  # electrons per pattern
DETECTOR = 64
CACHE = Path(os.environ.get("OREMDA_TEST_CACHE", Path.home() / ".cache" / "oremda-lab"))


# -- the dataset ------------------------------------------------------------------


def mos2_4dstem(scan: int = 16, detector: int = DETECTOR, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Noisy MoS2 4D-STEM data (scan, scan, detector, detector) float32 counts, and its metadata."""
    path = CACHE / f"mos2-4dstem-{scan}x{scan}-{detector}-v2.npy"
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists():
        return np.load(path), json.loads(info_path.read_text())
    try:
        clean, info = _simulate_abtem(scan, detector)
    except ImportError:
        clean, info = _synthetic(scan, detector)
    rng = np.random.default_rng(seed)
    clean = clean / clean.sum(axis=(-2, -1), keepdims=True)
    data = rng.poisson(clean * DOSE).astype(np.float32)
    info.update(dose=DOSE, seed=seed)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{uuid.uuid4().hex[:6]}.npy")
    np.save(tmp, data)
    os.replace(tmp, path)
    info_path.write_text(json.dumps(info))
    return data, info


def _simulate_abtem(scan: int, detector: int) -> tuple[np.ndarray, dict]:
    import abtem
    from ase.build import mx2

    abtem.config.set({"device": "cpu"})
    atoms = abtem.orthogonalize_cell(mx2(formula="MoS2", kind="2H", a=A_MOS2, thickness=3.19, vacuum=2.0))
    cell = atoms.cell.lengths()[:2].copy()
    # A ~32 x 33 A supercell makes the detector pixels ~1.3 mrad (angular sampling = lambda / extent).
    atoms *= (10, 6, 1)
    potential = abtem.Potential(atoms, gpts=(384, 400), slice_thickness=1, projection="infinite")
    probe = abtem.Probe(energy=ENERGY, semiangle_cutoff=SEMIANGLE)
    probe.grid.match(potential)
    grid = abtem.GridScan(start=(0, 0), end=tuple(cell), gpts=(scan, scan))
    patterns = probe.scan(potential, scan=grid, detectors=abtem.PixelatedDetector(max_angle=42)).compute(
        scheduler="threads", progress_bar=False
    )
    array = np.asarray(patterns.array, np.float64)
    cy, cx = array.shape[-2] // 2, array.shape[-1] // 2  # abTEM centres the zero beam here
    half = detector // 2
    array = array[..., cy - half : cy + half, cx - half : cx + half]
    mrad = [s * WAVELENGTH * 1e3 for s in patterns.sampling]
    return array, {"source": f"abtem {abtem.__version__}", "mrad_per_px": mrad}


def _synthetic(scan: int, detector: int) -> tuple[np.ndarray, dict]:
    """Bragg disks of hexagonal MoS2 whose intensities vary across the unit cell."""
    mrad = 1.3
    radius = SEMIANGLE / mrad
    g = WAVELENGTH / (A_MOS2 * np.sqrt(3) / 2) * 1e3 / mrad  # first-order spacing in px
    y, x = np.mgrid[:detector, :detector] - detector // 2
    sy, sx = np.meshgrid(
        np.linspace(0, 1, scan, endpoint=False), np.linspace(0, 1, scan, endpoint=False), indexing="ij"
    )
    out = np.zeros((scan, scan, detector, detector))
    for order, weight in ((0, 1.0), (1, 0.02), (np.sqrt(3), 0.005)):
        for k in range(6 if order else 1):
            angle = np.pi / 3 * k + (np.pi / 6 if order == np.sqrt(3) else 0)
            py, px = order * g * np.sin(angle), order * g * np.cos(angle)
            disk = ((y - py) ** 2 + (x - px) ** 2 <= radius**2).astype(float)
            modulation = 1 + 0.5 * np.cos(2 * np.pi * (k * sx + sy)) if order else 1.0
            out += weight * np.asarray(modulation)[..., None, None] * disk
    return out, {"source": "synthetic", "mrad_per_px": [mrad, mrad]}


@pytest.fixture(scope="module")
def mos2():
    return mos2_4dstem()


@pytest.fixture(scope="module")
def libertem_ctx():
    api = pytest.importorskip("libertem.api")
    return api.Context.make_with("inline")


# -- virtual detector ----------------------------------------------------------------


def test_dataset_is_physical(mos2):
    data, info = mos2
    assert data.shape == (16, 16, DETECTOR, DETECTOR) and data.dtype == np.float32
    assert abs(data.sum(axis=(-2, -1)).mean() / DOSE - 1) < 0.05
    mean = data.mean(axis=(0, 1))
    # the zero beam (a disk of the probe's semiangle) sits at the detector centre
    cy, cx = np.unravel_index(np.argmax(mean), mean.shape)
    assert abs(cy - DETECTOR // 2) <= SEMIANGLE / info["mrad_per_px"][0] + 1
    assert abs(cx - DETECTOR // 2) <= SEMIANGLE / info["mrad_per_px"][1] + 1


@pytest.mark.parametrize("inner, outer", [(6.0, 20.0), (9.5, 30.0)])
def test_ring_matches_libertem(mos2, libertem_ctx, inner, outer):
    data, _ = mos2
    ours = run_operator("virtual_detector", {"data": data}, {"inner_radius": inner, "outer_radius": outer})["image"]
    ds = libertem_ctx.load("memory", data=data, sig_dims=2)
    analysis = libertem_ctx.create_ring_analysis(dataset=ds, cx=32, cy=32, ri=inner, ro=outer)
    theirs = libertem_ctx.run(analysis).intensity.raw_data
    np.testing.assert_allclose(ours.data, theirs, rtol=1e-5)
    assert ours.data.shape == (16, 16)


def test_bright_field_matches_libertem_disk(mos2, libertem_ctx):
    data, _ = mos2
    ours = run_operator("virtual_detector", {"data": data}, {"inner_radius": 0, "outer_radius": 6})["image"]
    ds = libertem_ctx.load("memory", data=data, sig_dims=2)
    theirs = libertem_ctx.run(libertem_ctx.create_disk_analysis(dataset=ds, cx=32, cy=32, r=6)).intensity.raw_data
    np.testing.assert_allclose(ours.data, theirs, rtol=1e-5)


def test_ring_boundary_convention():
    """inner < r <= outer; inner 0 is the full disk (centre pixel included)."""
    frame = np.zeros((1, 1, 21, 21), np.float32)
    frame[0, 0, 10, 10] = 1  # r = 0
    frame[0, 0, 10, 13] = 10  # r = 3 exactly
    frame[0, 0, 10, 15] = 100  # r = 5 exactly
    value = lambda ri, ro: run_operator(  # noqa: E731
        "virtual_detector", {"data": frame}, {"inner_radius": ri, "outer_radius": ro, "center": [10, 10]}
    )["image"].data[0, 0]
    assert value(3, 5) == 100  # r = 3 is out, r = 5 is in
    assert value(0, 3) == 11  # a disk includes r = 0 and r = 3
    assert value(2.9, 4.9) == 10


# -- Bragg vector map ----------------------------------------------------------------


def test_bragg_vector_map_shows_the_mos2_lattice(mos2):
    data, info = mos2
    bvm = run_operator("bragg_vector_map", {"data": data}, {})["out"].data
    assert bvm.shape == (DETECTOR, DETECTOR)
    c = DETECTOR // 2
    assert np.unravel_index(np.argmax(bvm), bvm.shape) == (c, c)  # the zero beam, in every pattern
    masked = bvm.copy()
    masked[c - 4 : c + 5, c - 4 : c + 5] = 0
    spots = []
    for _ in range(12):
        y, x = np.unravel_index(np.argmax(masked), masked.shape)
        spots.append(((y - c) * info["mrad_per_px"][0], (x - c) * info["mrad_per_px"][1]))
        masked[max(y - 3, 0) : y + 4, max(x - 3, 0) : x + 4] = 0
    spots = np.array(spots)
    # Monolayer MoS2: the six {110} (d = a / 2) outshine the six {100} (d = a * sqrt(3) / 2).
    g100 = WAVELENGTH / (A_MOS2 * np.sqrt(3) / 2) * 1e3  # mrad
    for ring, expected in ((spots[:6], np.sqrt(3) * g100), (spots[6:], g100)):
        np.testing.assert_allclose(np.hypot(*ring.T), expected, atol=1.4)
        angles = np.sort(np.degrees(np.arctan2(*ring.T)) % 360)
        np.testing.assert_allclose(np.diff(angles), 60, atol=6)


def test_bragg_vector_map_reads_a_file(tmp_path, mos2):
    data, _ = mos2
    np.save(tmp_path / "scan.npy", data)
    from_file = run_operator("bragg_vector_map", {}, {"filename": "scan.npy"}, data_dir=tmp_path)["out"].data
    from_input = run_operator("bragg_vector_map", {"data": data}, {})["out"].data
    np.testing.assert_allclose(from_file, from_input)


# -- the same results on 1, 2 and 4 ranks as unsplit on the local runtime -----------


def _run(runtime, arena, name, inputs, params, node="n", extra=None):
    spec = default_registry().get(name)
    wire = {
        p: {"ref": arena.put(v, f"in-{uuid.uuid4().hex[:6]}--{p}").to_dict(), "meta": {}} for p, v in inputs.items()
    }
    assert not runtime.start({node: spec})
    task = Task(
        f"t{uuid.uuid4().hex[:6]}", node, spec, spec.resolved_params(params), wire, slot=node, extra=extra or {}
    )
    outputs = runtime.submit(task).result(timeout=300).outputs
    return {p: np.array(arena.get(ObjectRef.from_dict(v["ref"]))) for p, v in outputs.items()}


CASES = [
    ("virtual_detector", "image", {"inner_radius": 6, "outer_radius": 24}),
    ("virtual_detector", "image", {"inner_radius": 0, "outer_radius": 6}),
    ("bragg_vector_map", "out", {}),
]


@pytest.mark.parametrize("ranks, remote", [(1, []), (2, []), (4, []), (4, [2, 3])], ids=["1", "2", "4", "4-remote"])
def test_mpi_equals_local(mos2, ranks, remote):
    """``remote``: ranks that act as if on another node (their slices travel by MPI_Send)."""
    data, _ = mos2
    with Arena.create() as arena:
        with LocalRuntime(arena) as local:
            expected = [_run(local, arena, name, {"data": data}, params)[port] for name, port, params in CASES]
        with make_runtime("mpi", arena, ranks=ranks, remote_ranks=remote, start_timeout=60) as runtime:
            got = [_run(runtime, arena, name, {"data": data}, params)[port] for name, port, params in CASES]
    for (name, _, params), e, g in zip(CASES, expected, got, strict=True):
        assert g.shape == e.shape and g.dtype == e.dtype, name
        np.testing.assert_allclose(g, e, rtol=1e-5, err_msg=f"{name} {params}")


def test_upstream_bragg_example_each_rank_reads_its_rows(tmp_path, mos2):
    """Upstream's MPI example: run_locations + parallel + join 'sum', every rank reading the file."""
    data, _ = mos2
    np.save(tmp_path / "scan.npy", data)
    expected = run_operator("bragg_vector_map", {}, {"filename": "scan.npy"}, data_dir=tmp_path)["out"].data
    with Arena.create() as arena:
        with make_runtime("mpi", arena, ranks=3, data_dir=tmp_path, start_timeout=60) as runtime:
            upstream = {
                "run_locations": [0, 1, 2],
                "parallel": True,
                "parallel_output_to_join": "out",
                "parallel_output_join_method": "sum",
            }
            got = _run(runtime, arena, "bragg_vector_map", {}, {"filename": "scan.npy"}, node="bvm", extra=upstream)
            got = got["out"]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_engine_runs_the_upstream_bragg_pipeline_on_mpi(tmp_path, mos2):
    """The whole path: pipeline JSON with upstream placement fields, Engine, cache, re-run."""
    from oremda_lab.engine import Engine
    from oremda_lab.spec.pipeline import Pipeline

    data, _ = mos2
    np.save(tmp_path / "scan.npy", data)
    doc = {
        "nodes": [
            {"id": "bvm", "image": "oremda/bragg_vector_map", "params": {"filename": "scan.npy"},
             "run_locations": [0, 1], "parallel": True,
             "parallel_output_to_join": "out", "parallel_output_join_method": "sum"},
        ],
        "edges": [],
    }  # fmt: skip
    pipeline = Pipeline.from_json(doc)
    with Engine("local", tmp_path) as local:
        expected = np.array(local.run(pipeline).outputs["bvm"]["out"].data)
    engine = Engine("mpi", tmp_path, ranks=2, start_timeout=60)
    try:
        first = engine.run(pipeline)
        assert first.ok, first.errors
        np.testing.assert_allclose(first.outputs["bvm"]["out"].data, expected, rtol=1e-6)
        assert engine.run(pipeline).nodes["bvm"].status == "cached"
        pipeline.set_param("bvm", "threshold", 0.2)
        again = engine.run(pipeline)
        assert again.nodes["bvm"].status == "done"
        assert again.outputs["bvm"]["out"].data.sum() < first.outputs["bvm"]["out"].data.sum()
    finally:
        engine.close()


@pytest.mark.parametrize("remote", [[], [1]], ids=["local", "remote"])
def test_each_rank_reads_its_part_of_a_lazy_dataset(tmp_path, mos2, remote):
    """npy_reader gives a reference (C4); each rank reads its rows from the file in chunks, joined as declared."""
    from oremda_lab.engine import Engine
    from oremda_lab.spec.pipeline import Pipeline

    data, _ = mos2
    np.save(tmp_path / "scan.npy", data)
    doc = Pipeline.from_json({
        "nodes": [{"id": "read", "image": "oremda/npy_reader", "params": {"filename": "scan.npy"}},
                  {"id": "vd", "image": "oremda/virtual_detector", "params": {"inner_radius": 6, "outer_radius": 24}},
                  {"id": "bvm", "image": "oremda/bragg_vector_map", "params": {}}],
        "edges": [{"type": "data", "from": {"id": "read", "port": "data"}, "to": {"id": n, "port": "data"}}
                  for n in ("vd", "bvm")],
    })  # fmt: skip
    expected = {
        name: run_operator(name, {"data": data}, params)[port].data
        for name, port, params in (("virtual_detector", "image", {"inner_radius": 6, "outer_radius": 24}),
                                   ("bragg_vector_map", "out", {}))
    }  # fmt: skip
    events = []
    # a budget of 8 MiB: chunks of 512 KiB, two scan rows (32 patterns of 64x64 float32) at a time
    with Engine("mpi", tmp_path, ranks=2, remote_ranks=remote, start_timeout=60, shm_bytes=8 << 20) as engine:
        engine.subscribe(events.append)
        run = engine.run(doc)
        assert run.ok, run.errors
        np.testing.assert_allclose(run.outputs["vd"]["image"].data, expected["virtual_detector"], rtol=1e-5)
        np.testing.assert_allclose(run.outputs["bvm"]["out"].data, expected["bragg_vector_map"], rtol=1e-5)
    fractions = [e.progress for e in events if e.node == "vd" and e.progress is not None]
    assert fractions and fractions[-1] == 1.0


def test_a_newer_run_cancels_a_long_lazy_run_on_the_ranks(tmp_path, mos2):
    """C2 on MPI: the ranks see the cancel marker between chunks; the newer run then runs."""
    from oremda_lab.engine import Engine
    from oremda_lab.spec.pipeline import Pipeline
    from oremda_lab.testing import supersede_midway

    data, _ = mos2
    np.save(tmp_path / "scan.npy", np.tile(data, (16, 1, 1, 1)))  # 256 scan rows
    np.save(tmp_path / "small.npy", data[:2])
    doc = Pipeline.from_json({
        "nodes": [{"id": "read", "image": "oremda/npy_reader", "params": {"filename": "scan.npy"}},
                  {"id": "bvm", "image": "oremda/bragg_vector_map", "params": {}}],
        "edges": [{"type": "data", "from": {"id": "read", "port": "data"}, "to": {"id": "bvm", "port": "data"}}],
    })  # fmt: skip
    # chunks of one scan row (16 patterns): 128 per rank
    with Engine("mpi", tmp_path, ranks=2, start_timeout=60, shm_bytes=2 * 8 * 256 << 10) as engine:
        old, second, events = supersede_midway(engine, doc, "bvm", ("read", "filename", "small.npy"))
        assert old.superseded and "Cancelled" in old.nodes["bvm"].error["message"]
        assert max(e.progress for e in events if e.run_id == old.id and e.progress) < 0.9
        assert second.result(60).ok
