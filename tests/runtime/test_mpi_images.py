"""MPI ranks inside operator images (``MPIRuntime(images="podman")``): the hybrid model.

The launcher (MPICH's ``mpiexec``) starts one ``podman run`` per rank; each runs the rank
program shipped in the operator's image with the kernel's MPI bound in. Needs mpi4py,
``mpiexec``, the ``podman`` command and the operator images in Podman's local store
(``oremda-lab build --engine podman --from-docker``; the fixture builds the ones used);
the tests carry the ``mpi`` and ``podman`` markers. ``images="apptainer"`` is implemented
but not tested here (no Apptainer on this machine).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_docker import engine_client
from test_mpi import mpi_host_pids

from oremda_lab.dataplane.arena import Arena
from oremda_lab.dataplane.refs import ObjectRef
from oremda_lab.engine import Engine
from oremda_lab.images.build import ImageBuilder
from oremda_lab.registry import Registry, default_registry
from oremda_lab.runtime import make_runtime
from oremda_lab.runtime.base import Task
from oremda_lab.runtime.mpi import JOB_LABEL
from oremda_lab.testing import FAULT_OPERATORS, RuntimeContract, fault_pipeline

pytestmark = [pytest.mark.mpi, pytest.mark.podman]

OPERATORS = ["virtual_detector", "bragg_vector_map"]


def job_containers() -> list[str]:
    out = subprocess.run(
        ["podman", "ps", "-aq", "--filter", f"label={JOB_LABEL}"], capture_output=True, text=True, timeout=60
    )
    return out.stdout.split()


@pytest.fixture(scope="module", autouse=True)
def images():
    """The images these tests run, built (and copied to Podman) if missing or outdated."""
    client = engine_client("podman")
    registry = Registry([FAULT_OPERATORS])
    ImageBuilder(client, engine="podman", registry=registry, log=lambda m: None).build(["fault", *OPERATORS])


@pytest.fixture(autouse=True)
def nothing_left():
    """No rank process and no rank container outlives its runtime (MPI's own shared memory:
    checked per job in the kill test, since other processes on the machine run MPI jobs too)."""
    before, containers = mpi_host_pids(), set(job_containers())
    yield
    deadline = time.monotonic() + 10
    while (mpi_host_pids() - before or set(job_containers()) - containers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not mpi_host_pids() - before, "MPI ranks outlived their runtime"
    assert not set(job_containers()) - containers, "a rank's container outlived its job"


class TestMPIRanksInPodman(RuntimeContract):
    runtime = "mpi"
    options = {"ranks": 2, "images": "podman", "start_timeout": 120}


def four_d(seed: int = 4) -> np.ndarray:
    """A small 4D-STEM scan: a bright disk whose size varies over the scan, plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:32, :32]
    r = np.hypot(y - 16, x - 16)
    radius = 4 + 6 * rng.random((12, 10))
    data = (r[None, None] <= radius[..., None, None]).astype(np.float32) * 100
    return data + rng.random(data.shape, dtype=np.float32)


UPSTREAM_SUM = {"run_locations": [0, 1], "parallel": True, "parallel_output_to_join": "out",
                "parallel_output_join_method": "sum"}  # fmt: skip
CASES = [
    # the scan split over the ranks by the runtime, each rank's images joined (concatenate)
    ("virtual_detector", {"data": True}, {"inner_radius": 3, "outer_radius": 9}, {}),
    # upstream's way: every rank reads its own rows of the file, partial maps summed
    ("bragg_vector_map", {}, {"filename": "scan.npy"}, UPSTREAM_SUM),
]


@pytest.mark.parametrize("operator, inputs, params, extra", CASES, ids=[c[0] for c in CASES])
def test_ranks_in_images_equal_ranks_in_the_kernels_python(tmp_path, operator, inputs, params, extra):
    """Both data-parallel operators on 2 ranks, in their images and in the kernel's Python."""
    data = four_d()
    np.save(tmp_path / "scan.npy", data)
    spec = default_registry().get(operator)
    results, environments = {}, {}
    with Arena.create() as arena:
        wire = {"data": {"ref": arena.put(data, "scan--data").to_dict(), "meta": {}}} if inputs else {}
        for images in (None, "podman"):
            options = {"images": images} if images else {}
            with make_runtime("mpi", arena, ranks=2, data_dir=tmp_path, start_timeout=120, **options) as runtime:
                assert not runtime.start({"n": spec})
                task = Task(f"t-{images}", "n", spec, spec.resolved_params(params), wire, slot="n", extra=extra)
                (out,) = runtime.submit(task).result(timeout=120).outputs.values()
                results[images] = np.array(arena.get(ObjectRef.from_dict(out["ref"])))
                environments[images] = runtime.environment("n")
    np.testing.assert_allclose(results["podman"], results[None], rtol=1e-6)
    # the image's own Python ran it, not the kernel's
    assert environments["podman"]["executable"] == "/usr/bin/python3"
    assert environments["podman"]["id"].startswith("image:sha256:")
    assert environments[None]["id"] == "kernel"


def test_a_killed_rank_is_a_node_failure_and_its_containers_go(tmp_path):
    pipeline = fault_pipeline({"mode": "sleep", "seconds": 60})
    engine = Engine("mpi", tmp_path, registry=Registry([FAULT_OPERATORS]), ranks=2, images="podman",
                    timeout=120, start_timeout=120)  # fmt: skip
    try:
        future = engine.submit(pipeline)
        deadline = time.monotonic() + 120
        while not engine.runtime._jobs or len(next(iter(engine.runtime._jobs.values())).ranks) < 2:
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.1)
        time.sleep(1.0)
        (job,) = engine.runtime._jobs.values()
        assert len(job_containers()) >= 2
        mpich_files = [Path(f) for f in job.shared_files if Path(f).name.startswith("mpich_shm_")]
        assert mpich_files and all(f.exists() for f in mpich_files)
        os.kill(job.ranks[job.assigned.get("n0", 0)]["pid"], signal.SIGKILL)
        run = future.result(timeout=60)
        error = run.nodes["n0"].error
        assert "died" in error["message"] and error["exit_status"] == -9, error
        assert not any(f.exists() for f in mpich_files), "the killed job left MPI's shared memory"
        pipeline.set_param("n0", "mode", "ok")
        assert engine.run(pipeline).ok  # a new job, new containers
    finally:
        session = engine.arena.path
        engine.close()
    assert not Path(session).exists()


def test_the_cli_runs_ranks_in_images_and_records_the_image(tmp_path):
    """`oremda-lab run ... --runtime mpi --ranks 2 --images podman`, upstream's placement fields in the JSON."""
    np.save(tmp_path / "scan.npy", four_d())
    node = {"id": "bvm", "image": "oremda/bragg_vector_map", "params": {"filename": "scan.npy"}, **UPSTREAM_SUM}
    (tmp_path / "p.json").write_text(json.dumps({"nodes": [node], "edges": []}))
    command = [sys.executable, "-m", "oremda_lab.cli", "run", str(tmp_path / "p.json"), "--data", str(tmp_path),
               "--out", str(tmp_path / "out"), "--runtime", "mpi", "--ranks", "2", "--images", "podman",
               "--record", str(tmp_path / "record.json"), "--quiet"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["nodes"]["bvm"]["status"] == "done"
    pin = record["provenance"]["nodes"]["bvm"]
    assert pin["image"] == "localhost/oremda/bragg_vector_map:1.0.0" and pin["image_id"].startswith("sha256:")


def test_an_image_built_from_other_code_is_refused(tmp_path):
    """As on the container runtimes: the folder changed since its image was built."""
    folder = tmp_path / "ops" / "fault"
    shutil.copytree(FAULT_OPERATORS / "fault", folder)
    (folder / "note.txt").write_text("changed after the image was built")
    spec = Registry([tmp_path / "ops"]).get("fault")
    with Arena.create() as arena, make_runtime("mpi", arena, ranks=2, images="podman") as runtime:
        failures = runtime.start({"n": spec})
    assert "was built from another version of fault" in failures["n"].message
    assert "oremda-lab build --engine podman fault" in failures["n"].message
