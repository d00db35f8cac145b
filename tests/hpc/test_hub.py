"""JupyterHub on Slurm, end to end: log in, the server starts as a Slurm job, the editor runs on MPI in it.

The hub's spawner environment sets ``OREMDA_RUNTIME=mpi`` and the ``srun`` launcher, and
its batch script sets ``OREMDA_MPI_RANKS`` from the job's tasks, as docs/hpc.md tells
an admin to; the notebook loads the getting-started graph and makes
``PipelineEditor(pipeline)`` with no engine given. Screenshots land in tests/browser/artifacts/hub-*.png.
"""

import getpass
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from hub import jupyterhub
from slurm import Cluster, processes, require, running

from oremda_lab.worker.rank import mpi_shared_files

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS / "browser"), str(TESTS / "widget")]
from lab import ARTIFACTS, CHROMIUM, chromium_page, open_notebook, run_all_cells, run_code_in_new_cell  # noqa: E402
from widget_helpers import BLUR_DISPLAY  # noqa: E402

pytestmark = pytest.mark.browser
RANKS = 2
USER = getpass.getuser()  # the hub's own user: the job runs as it (exec_prefix = "")
FRAME = "() => Number(document.querySelector(\"canvas[data-display='view']\")?.dataset.frame || 0)"

NOTEBOOK_CODE = """\
from oremda_lab import Pipeline, PipelineEditor

pipeline = Pipeline.load("pipeline.json")
editor = PipelineEditor(pipeline)  # the engine's runtime: what the hub's environment selects
editor
"""


def notebook(folder: Path) -> None:
    """The user's files: the getting-started graph as ``pipeline.json`` and a notebook that loads it."""
    (folder / "pipeline.json").write_text(json.dumps(BLUR_DISPLAY, indent=2))
    cell = {"id": "editor", "cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": NOTEBOOK_CODE}  # fmt: skip
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    doc = {"cells": [cell], "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}
    (folder / "hpc.ipynb").write_text(json.dumps(doc))


def cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"hub-{name}.png"))


def test_editor_runs_on_mpi_in_a_slurm_job_spawned_by_the_hub(cluster: Cluster, tmp_path):
    require(shutil.which(CHROMIUM) is not None, f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    require(shutil.which("configurable-http-proxy") is not None, "npm install -g configurable-http-proxy")
    for module in ("batchspawner", "playwright"):
        require(importlib.util.find_spec(module) is not None, f"pip install {module}")
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    notebook(notebooks)
    launcher = "srun -n {ranks} --mpi=pmi2"
    environment = {"OREMDA_RUNTIME": "mpi", "OREMDA_MPI_LAUNCHER": launcher}
    with jupyterhub(cluster, tmp_path, notebooks, environment, ranks=RANKS) as hub, chromium_page() as page:
        try:
            page.goto(f"{hub}/hub/login", wait_until="domcontentloaded")
            page.fill("#username_input", USER)
            page.fill("#password_input", "any")
            shot(page, "01-login")
            page.click("#login_submit")
            # the hub submits the server as a batch job and redirects to it once it answers
            page.wait_for_url(re.compile(f"/user/{USER}/lab"), timeout=120_000)
            jobs = cluster.run("squeue", "-h", "-o", "%i %j %T").stdout.split("\n")
            server = [line.split() for line in jobs if " jupyterhub " in line]
            assert len(server) == 1 and server[0][2] == "RUNNING", jobs
            job_id = server[0][0]
            page.wait_for_selector(".jp-LabShell", timeout=60_000)
            shot(page, "02-lab")

            open_notebook(page, f"{hub}/user/{USER}", "hpc.ipynb")
            run_all_cells(page)
            page.locator(".oremda-editor").first.wait_for(timeout=60_000)
            page.wait_for_function(f"() => ({FRAME})() >= 1", timeout=120_000)
            page.wait_for_selector(".oremda-node[data-node-id='blur']:is([data-state='done'], [data-state='cached'])")
            page.locator(".oremda-editor").first.scroll_into_view_if_needed()
            # The editor's requests reach the kernel through the hub's proxy and the server
            # extension's relay (the direct path), not the comm.
            page.wait_for_selector(".oremda-editor[data-requests='direct']", timeout=30_000)
            shot(page, "03-display")

            where = run_code_in_new_cell(
                page,
                "import os; r = editor.engine.runtime\n"
                "print(r.name, r.ranks, ' '.join(r.launcher), os.environ['SLURM_JOB_ID'], sep='|')",
            )
            assert where.strip().split("|") == ["mpi", str(RANKS), launcher, job_id]
            # an edit re-runs on the same warm ranks: one step of the server's job
            frame = page.evaluate(FRAME)
            run_code_in_new_cell(page, 'pipeline.set_param("blur", "sigma", 4.0); print("set")')
            page.wait_for_function(f"() => ({FRAME})() > {frame}", timeout=60_000)
            steps = cluster.run("squeue", "-h", "-s", "-j", job_id, "-o", "%i").stdout.split()
            assert sorted(steps) == [f"{job_id}.0", f"{job_id}.batch"], steps  # the server runs in .batch
            shot(page, "04-runtime")
            proxy = int((tmp_path / "proxy.pid").read_text())
            ranks = [pid for pid in processes(cluster.conf) if cmdline(pid)[1:3] == [b"-m", b"oremda_lab.worker.rank"]]
            assert len(ranks) == RANKS, ranks
            mpi_files = set().union(*(mpi_shared_files(pid) for pid in ranks))
            assert mpi_files  # MPICH's own segments, which ranks killed by the job's end could leave
        finally:
            shot(page, "last")
    # the hub cancelled the server's job when it stopped, and the proxy is gone too
    cluster.wait_no_jobs()
    assert not running(proxy)
    assert not any(running(pid) for pid in ranks)
    assert not [f for f in mpi_files if Path(f).exists()], "the job's end left MPI shared memory behind"
