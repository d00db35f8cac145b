"""The commands that start MPI ranks inside operator images (no MPI or engine needed).

Podman's are also run for real in ``test_mpi_images.py``; Apptainer's are checked only
here (no Apptainer on the machines this was developed on).
"""

import pytest

from oremda_lab.runtime.mpi import (
    DATA_MOUNT,
    JOB_LABEL,
    OPERATOR_DIR,
    RANK_WRAPPER,
    ApptainerRanks,
    MPIRuntime,
    PodmanRanks,
)
from oremda_lab.spec.operator import OperatorSpec
from oremda_lab.worker.protocol import AUTHKEY_ENV

SPEC = OperatorSpec(name="virtual_detector", version="1.0.0")
BINDS = {"/site/mpi4py": "/opt/oremda/mpi/mpi4py", "/site/lib": "/opt/oremda/mpi/lib"}


@pytest.fixture
def runtime(tmp_path):
    from oremda_lab.dataplane.arena import Arena

    with Arena.create() as arena:
        runtime = MPIRuntime(arena, ranks=3, images="podman", binds=BINDS, data_dir=tmp_path)
        try:
            yield runtime
        finally:
            runtime.stop()


def test_podman_ranks_run_the_rank_program_in_the_image(runtime, tmp_path):
    key = runtime.job_key(SPEC)
    assert key == "localhost/oremda/virtual_detector:1.0.0"
    command = runtime.command("mpi-test", key)
    session = str(runtime.arena.path)
    assert command[:3] == ["mpiexec", "-n", "3"]
    run = command[command.index("podman") + 1 :]
    pairs = set(zip(run, run[1:], strict=False))
    for namespace in ("network", "ipc", "pid", "uts"):
        assert (f"--{namespace}", "host") in pairs
    assert ("-v", f"{session}:{session}:rw") in pairs and ("-v", f"{tmp_path}:{DATA_MOUNT}:ro") in pairs
    assert {("-v", f"{h}:{c}:ro") for h, c in BINDS.items()} <= pairs
    assert ("--env", "PMI*") in pairs and ("--label", f"{JOB_LABEL}=mpi-test") in pairs
    assert ("--env", AUTHKEY_ENV) in pairs and runtime.authkey.hex() not in " ".join(command)  # by name only
    image = run.index(key)
    assert run[image - 2 : image] == ["--entrypoint", "python3"]
    assert run[image + 1 : image + 5] == ["-c", RANK_WRAPPER, f"{session}/run/mpi-test", "-m"]
    assert run[image + 5] == "oremda_lab.worker.rank"
    assert runtime.operator_folder(SPEC) == OPERATOR_DIR
    assert runtime.rank_env()["OREMDA_DATA_DIR"] == DATA_MOUNT


def test_apptainer_ranks_exec_the_operators_sif(tmp_path):
    ranks = ApptainerRanks(BINDS, sif_dir=tmp_path)
    sif = ranks.reference(SPEC)
    assert sif == str(tmp_path / "virtual_detector_1.0.0.sif")
    command = ranks.command(sif, "mpi-test", "/dev/shm/oremda-1-x", "/data/here", ["OMP_NUM_THREADS"])
    assert command[1] == "exec"
    binds = command[command.index("--bind") + 1].split(",")
    assert "/dev/shm/oremda-1-x:/dev/shm/oremda-1-x" in binds and "/site/mpi4py:/opt/oremda/mpi/mpi4py" in binds
    assert "/data/here:/data:ro" in command
    assert command[command.index(sif) + 1 :] == ["python3", "-c", RANK_WRAPPER, "/dev/shm/oremda-1-x/run/mpi-test"]


def test_unknown_image_engine_is_refused(tmp_path):
    from oremda_lab.dataplane.arena import Arena

    with Arena.create() as arena, pytest.raises(ValueError, match="images must be one of podman, apptainer"):
        MPIRuntime(arena, images="docker")


def test_podman_ranks_reference_what_the_pipeline_names():
    ranks = PodmanRanks(BINDS)
    assert ranks.reference(OperatorSpec(name="x", image="reg.example/lab/x@sha256:ab")) == "reg.example/lab/x@sha256:ab"
