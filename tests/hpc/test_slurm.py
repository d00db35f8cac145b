"""Pipelines on a real Slurm cluster: the MPI runtime's ``srun`` launcher inside ``salloc`` and ``sbatch``.

The job runs ``pipeline_job.py``, whose ``Engine()`` takes the runtime from the
environment (``OREMDA_RUNTIME=mpi``, ``OREMDA_MPI_RANKS``, ``OREMDA_MPI_LAUNCHER``), as a
facility's batch script would set it. References: a ring sum written with NumPy for the
virtual detector, and the local runtime's result for every output.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from oremda_lab.engine import Engine
from oremda_lab.registry import Registry
from oremda_lab.spec.pipeline import Pipeline
from oremda_lab.testing import write_operator

HERE = Path(__file__).resolve().parent
RANKS = 2
LAUNCHER = "srun -n {ranks} --mpi=pmi2"
RING = {"inner_radius": 3, "outer_radius": 9}

# Reports, from every rank, which Slurm job, step and task it runs in.
WHERE = """
import os
import numpy as np
from oremda_lab.worker.sdk import operator

@operator
def where(inputs, params):
    ids = [int(os.environ.get(k, -1)) for k in ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_PROCID")]
    return {"out": np.array([ids + [inputs["x"].data.shape[0]]])}
"""


def scan(shape=(12, 10, 32, 32), seed=0) -> np.ndarray:
    """Poisson counts of a bright disk wandering over the detector with the probe position."""
    rng = np.random.default_rng(seed)
    sy, sx, dy, dx = shape
    y, x = np.mgrid[:dy, :dx]
    data = np.empty(shape, np.float32)
    for i in range(sy):
        for j in range(sx):
            cy, cx = dy / 2 + (i - sy / 2) * 0.3, dx / 2 + (j - sx / 2) * 0.3
            disk = ((y - cy) ** 2 + (x - cx) ** 2 <= 36) * 200.0
            spots = sum(((y - cy - a) ** 2 + (x - cx - b) ** 2 <= 2) * 20.0 for a, b in ((10, 0), (0, 10), (-10, -10)))
            data[i, j] = rng.poisson(disk + spots + 0.5)
    return data


def ring_sum(data: np.ndarray, inner: float, outer: float) -> np.ndarray:
    """The virtual detector by hand: the sum over inner < r <= outer around the detector centre."""
    dy, dx = data.shape[-2:]
    y, x = np.mgrid[:dy, :dx]
    r = np.hypot(y - dy // 2, x - dx // 2)
    return (data * ((r > inner) & (r <= outer))).sum(axis=(-2, -1))


@pytest.fixture(scope="module")
def job_files(tmp_path_factory):
    """Data, a probe operator and the pipeline (reader -> virtual detector, Bragg vector map, probe)."""
    folder = tmp_path_factory.mktemp("slurm-job")
    np.save(folder / "scan.npy", scan())  # 4D: the reader gives a lazy reference, each rank reads its rows
    operators = folder / "operators"
    description = {
        "name": "where",
        "entrypoint": "run",
        "ports": {"input": {"x": {"type": "data"}}, "output": {"out": {"type": "data"}}},
        "parallel": {"split": {"port": "x", "axis": 0}, "join": {"out": {"method": "concatenate", "axis": 0}}},
    }
    write_operator(operators, description, WHERE)

    def edge(a, pa, b, pb):
        return {"type": "data", "from": {"id": a, "port": pa}, "to": {"id": b, "port": pb}}

    doc = {
        "nodes": [
            {"id": "read", "image": "oremda/npy_reader", "params": {"filename": "scan.npy"}},
            {"id": "vd", "image": "oremda/virtual_detector", "params": RING},
            {"id": "bvm", "image": "oremda/bragg_vector_map", "params": {}},
            {"id": "where", "image": "oremda/where", "params": {}},
        ],
        "edges": [
            edge("read", "data", "vd", "data"), edge("read", "data", "bvm", "data"), edge("vd", "image", "where", "x"),
        ],
    }  # fmt: skip
    (folder / "pipeline.json").write_text(json.dumps(doc))
    return folder


@pytest.fixture(scope="module")
def expected(job_files):
    """The local runtime's outputs."""
    registry = Registry([job_files / "operators"])
    with Engine("local", job_files, registry=registry) as engine:
        pipeline = Pipeline.load(job_files / "pipeline.json", catalog=engine.registry)
        run = engine.run(pipeline)
        assert run.ok, run.errors
        return {f"{n}.{p}": np.array(v.data) for n, ports in run.outputs.items() for p, v in ports.items()}


def job_env(cluster, job_files) -> dict[str, str]:
    env = {k: v for k, v in cluster.env.items() if not k.startswith(("SLURM_", "OREMDA_MPI"))}
    env.update(
        OREMDA_RUNTIME="mpi",
        OREMDA_MPI_RANKS=str(RANKS),
        OREMDA_MPI_LAUNCHER=LAUNCHER,
        OREMDA_OPERATORS_PATH=str(job_files / "operators"),
        SLURM_CONF=str(cluster.conf),
    )
    return env


def check(out: Path, expected: dict[str, np.ndarray], data: np.ndarray, job_id: str) -> None:
    info = json.loads(out.with_name("runtime.json").read_text())
    assert not Path(info.pop("session")).exists(), "the job left its shared memory behind"
    assert info == {"runtime": "mpi", "ranks": RANKS, "launcher": LAUNCHER.split()}
    with np.load(out) as got:
        assert set(got.files) == set(expected)
        ring = ring_sum(data, RING["inner_radius"], RING["outer_radius"])
        np.testing.assert_allclose(got["vd.image"], ring, rtol=1e-6)
        for name in ("vd.image", "bvm.out"):
            assert got[name].dtype == expected[name].dtype, name
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, err_msg=name)
        where = got["where.out"]
    # every rank is a task of one srun step inside this very allocation, and has its share of rows
    assert where[:, 0].tolist() == [int(job_id)] * RANKS
    assert len(set(where[:, 1].tolist())) == 1 and where[0, 1] >= 0
    assert sorted(where[:, 2].tolist()) == list(range(RANKS))
    assert where[:, 3].sum() == data.shape[0]


@pytest.mark.parametrize("selected_by", ["environment", "jupyter-config"])
def test_pipeline_in_salloc_equals_local(cluster, job_files, expected, selected_by):
    """The runtime comes from ``OREMDA_*`` variables, or from a facility's ``oremda_lab.json``."""
    out = job_files / f"salloc-{selected_by}" / "out.npz"
    out.parent.mkdir()
    env = job_env(cluster, job_files)
    if selected_by == "jupyter-config":
        options = {"ranks": RANKS, "launcher": LAUNCHER}
        (out.parent / "oremda_lab.json").write_text(json.dumps({"runtime": "mpi", "options": options}))
        env = {k: v for k, v in env.items() if k not in ("OREMDA_RUNTIME", "OREMDA_MPI_RANKS", "OREMDA_MPI_LAUNCHER")}
        env["JUPYTER_CONFIG_DIR"] = str(out.parent)
    command = [
        sys.executable,
        str(HERE / "pipeline_job.py"),
        str(job_files / "pipeline.json"),
        str(job_files),
        str(out),
    ]
    done = cluster.run("salloc", "-n", str(RANKS), "--time=5", *command, env=env)
    job_id = next(w for w in done.stderr.split() if w.isdigit())  # "salloc: Granted job allocation N"
    check(out, expected, np.load(job_files / "scan.npy"), job_id)
    cluster.wait_no_jobs()


@pytest.mark.parametrize("export", ["ALL", "list"])
def test_pipeline_in_sbatch_equals_local(cluster, job_files, expected, export):
    """``export="list"``: submitted as batchspawner does, ``--export=`` naming the variables to pass.

    Slurm then sets ``SLURM_EXPORT_ENV`` in the job, which every ``srun`` in it obeys too.
    """
    out = job_files / f"sbatch-{export}" / "out.npz"
    out.parent.mkdir()
    script = job_files / f"sbatch-{export}" / "job.sh"
    env = job_env(cluster, job_files)
    names = (
        "ALL" if export == "ALL" else ",".join(sorted(k for k in env if k.startswith(("OREMDA_", "SLURM_"))) + ["PATH"])
    )
    script.write_text(
        "#!/bin/bash\n"
        f"#SBATCH --ntasks={RANKS} --time=5 --output={out.parent}/slurm-%j.log --export={names}\n"
        "set -e\n"
        f"{sys.executable} {HERE / 'pipeline_job.py'} {job_files / 'pipeline.json'} {job_files} {out}\n"
        # the CLI as a batch script would run it: its runtime too comes from the environment
        f"{Path(sys.executable).parent / 'oremda-lab'} run {job_files / 'pipeline.json'} --data {job_files}"
        f" --record {out.parent / 'record.json'} --quiet\n"
    )
    done = subprocess.run(
        ["sbatch", "--wait", "--parsable", str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    job_id = done.stdout.strip().split(";")[0]
    log = (out.parent / f"slurm-{job_id}.log").read_text()
    assert done.returncode == 0, f"{done.stderr}\n{log}"
    check(out, expected, np.load(job_files / "scan.npy"), job_id)
    record = json.loads((out.parent / "record.json").read_text())
    assert record["ok"] and record["provenance"]["runtime"] == "mpi", log
    cluster.wait_no_jobs()


CANCELLED_STEP = """
import json, sys
from oremda_lab.engine import Engine
from oremda_lab.registry import Registry
from oremda_lab.testing import FAULT_OPERATORS, fault_pipeline

with Engine(registry=Registry([FAULT_OPERATORS]), timeout=120) as engine:
    print("running", flush=True)
    run = engine.run(fault_pipeline({"mode": "sleep", "seconds": 60}))
    again = engine.run(fault_pipeline({}))
    print(json.dumps({"error": run.errors.get("n0"), "again": again.ok, "session": str(engine.arena.path)}))
"""


def test_cancelled_rank_step_is_a_node_error_and_the_next_run_starts_a_new_one(cluster, job_files):
    """``scancel JOB.0`` (the ranks' srun step) mid-task: the node fails with the job's log, nothing hangs."""
    env = job_env(cluster, job_files)
    with subprocess.Popen(
        ["salloc", "-n", str(RANKS), "--time=5", sys.executable, "-c", CANCELLED_STEP],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as job:  # fmt: skip
        try:
            assert job.stdout.readline().strip() == "running"
            deadline = time.monotonic() + 60
            while not (
                steps := [s for s in cluster.run("squeue", "-h", "-s", "-o", "%i").stdout.split() if s.endswith(".0")]
            ):
                assert time.monotonic() < deadline, "the ranks' step never started"
                time.sleep(0.2)
            time.sleep(1)  # the task is running on a rank
            cluster.run("scancel", steps[0])
            out, err = job.communicate(timeout=90)
        finally:
            if job.poll() is None:
                job.kill()
    assert job.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["again"] is True  # a fresh srun step ran the next pipeline
    assert "MPI job" in result["error"]["message"] or "died" in result["error"]["message"], result["error"]
    assert not Path(result["session"]).exists()
    cluster.wait_no_jobs()
