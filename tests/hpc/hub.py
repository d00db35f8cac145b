"""JupyterHub whose single-user servers are Slurm jobs (batchspawner), for the HPC tier.

:func:`jupyterhub` writes a ``jupyterhub_config.py`` like a facility's (see docs/hpc.md)
into a folder of its own, starts ``jupyterhub`` by pid and yields its URL. Afterwards it
stops the hub by pid (which stops the user's server, i.e. cancels its job) and then the
``configurable-http-proxy`` the hub started, by the pid in its pid file: a hub killed
before it stops the proxy leaves the proxy running.

Users log in with any password (``DummyAuthenticator``); the server runs as the hub's
own user (``exec_prefix = ""``: no sudo), which is root here, so the user to log in as is
``root`` (batchspawner looks the user's home up in ``/etc/passwd``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from slurm import PARTITION, Cluster, running

from oremda_lab.testing import free_port

BIN = Path(sys.executable).parent  # jupyterhub, jupyterhub-singleuser, batchspawner-singleuser

# The facility's part: everything but ports and folders is what docs/hpc.md shows an admin.
CONFIG = """\
c = get_config()  # noqa: F821
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = "{folder}/proxy.pid"
c.JupyterHub.db_url = "sqlite:///{folder}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{folder}/cookie_secret"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True

c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
c.SlurmSpawner.exec_prefix = ""            # the hub's user submits (sites: "sudo -E -u {{username}}")
c.SlurmSpawner.req_partition = "{partition}"
c.SlurmSpawner.req_runtime = "00:30:00"
c.SlurmSpawner.req_options = "--ntasks={ranks}"  # MPI ranks are Slurm tasks
c.SlurmSpawner.batch_script = '''#!/bin/bash
#SBATCH --job-name=jupyterhub
#SBATCH --output={folder}/job-%j.log
#SBATCH --chdir={notebooks}
#SBATCH --export={{{{keepvars}}}}
#SBATCH --partition={{{{partition}}}}
#SBATCH --time={{{{runtime}}}}
#SBATCH {{{{options}}}}
export OREMDA_MPI_RANKS=$SLURM_NTASKS   # the engine's ranks: the job's tasks
{{{{cmd}}}}
'''
c.SlurmSpawner.batchspawner_singleuser_cmd = "{bin}/batchspawner-singleuser"
c.Spawner.cmd = ["{bin}/jupyterhub-singleuser"]
c.Spawner.args = {args!r}
c.Spawner.notebook_dir = "{notebooks}"
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.environment = {environment!r}
"""


@contextmanager
def jupyterhub(
    cluster: Cluster, folder: Path, notebooks: Path, environment: Mapping[str, str], ranks: int = 2,
    timeout: float = 60,
) -> Iterator[str]:  # fmt: skip
    """Start the hub (config in ``folder``, servers in ``notebooks``); yield its URL; stop hub and proxy."""
    port = free_port()
    args = ["--allow-root"] if os.geteuid() == 0 else []
    config = folder / "jupyterhub_config.py"
    config.write_text(
        CONFIG.format(
            port=port, hub_port=free_port(), proxy_api_port=free_port(), folder=folder, partition=PARTITION,
            ranks=ranks, notebooks=notebooks, bin=BIN, args=args,
            environment={"SLURM_CONF": str(cluster.conf), "PATH": f"{BIN}:{os.environ['PATH']}", **environment},
        )
    )  # fmt: skip
    env = {**cluster.env, "PATH": f"{BIN}:{os.environ['PATH']}"}
    url = f"http://127.0.0.1:{port}"
    with open(folder / "jupyterhub.log", "wb") as log:
        hub = subprocess.Popen(
            [str(BIN / "jupyterhub"), "-f", str(config)], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + timeout
        while not _answers(f"{url}/hub/health"):
            if hub.poll() is not None or time.monotonic() > deadline:
                tail = (folder / "jupyterhub.log").read_text()[-3000:]
                raise RuntimeError(f"jupyterhub did not start (exit status {hub.poll()}):\n{tail}")
            time.sleep(0.2)
        yield url
    finally:
        _stop(hub, timeout=30)
        _stop_proxy(folder / "proxy.pid")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _stop(process: subprocess.Popen, timeout: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # the hub stops its servers (scancel) and then the proxy
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _stop_proxy(pid_file: Path) -> None:
    """Stop the proxy if the hub left it (its pid file names it; only a running proxy of ours)."""
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"configurable-http-proxy" in cmdline:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if running(pid):
            os.kill(pid, signal.SIGKILL)
