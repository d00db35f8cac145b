"""HPC tier: a real one-node Slurm cluster (marker ``mpi``; the hub test is ``browser`` too)."""

import os
import shutil
from pathlib import Path

import pytest
from slurm import missing_commands, require, slurm_cluster


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.mpi)


@pytest.fixture(scope="session")
def cluster():
    """A running one-node Slurm cluster (4 CPUs as far as Slurm knows), stopped after the session."""
    missing = missing_commands()
    require(not missing, f"Slurm/munge commands missing: {missing} (apt-get install slurm-wlm munge)")
    require(os.geteuid() == 0, "the test cluster runs its daemons as root")
    require(shutil.which("mpiexec") is not None, "no MPI (pip install mpi4py mpich)")
    with slurm_cluster() as cluster:
        yield cluster
