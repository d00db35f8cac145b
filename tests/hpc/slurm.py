"""A one-node Slurm cluster for the HPC tier, from Debian's ``slurm-wlm`` and ``munge``.

:func:`slurm_cluster` generates a munge key and a ``slurm.conf`` in a folder of its own
(free ports, state, spool and logs inside it), starts ``munged``, ``slurmctld`` and
``slurmd`` in the foreground by pid, waits until the node is idle and yields a
:class:`Cluster`; afterwards it stops the three by pid. Commands run against it need
``SLURM_CONF`` (``Cluster.env``). Runs as root here (``SlurmUser=root``); a job runs as the
user who submits it.

Run it by hand: ``python tests/hpc/slurm.py`` starts a cluster and waits for Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from oremda_lab.testing import free_port

DAEMONS = ("munged", "slurmctld", "slurmd")
PARTITION = "debug"


def require(condition: bool, message: str) -> None:
    """Skip the test without ``condition``; under ``OREMDA_REQUIRE_ENGINES=1`` (CI) fail instead."""
    import pytest

    if not condition:
        if os.environ.get("OREMDA_REQUIRE_ENGINES"):
            pytest.fail(message)
        pytest.skip(message)


def missing_commands() -> list[str]:
    """Daemons and client commands of this tier that are not installed."""
    commands = (*DAEMONS, "srun", "salloc", "sbatch", "squeue", "sinfo", "scontrol")
    return [c for c in commands if shutil.which(c) is None and not Path("/usr/sbin", c).exists()]


@dataclass
class Cluster:
    """A running cluster: its folder (config, state, logs) and the environment that reaches it."""

    folder: Path
    conf: Path

    @property
    def env(self) -> dict[str, str]:
        """This process's environment plus ``SLURM_CONF``."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *command: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        """Run a Slurm client command (or any command) against this cluster; check it succeeds."""
        return subprocess.run(
            command, env=kwargs.pop("env", self.env), capture_output=True, text=True, timeout=timeout, check=True,
            **kwargs,
        )  # fmt: skip

    def jobs(self) -> list[str]:
        """Ids of the jobs queued or running."""
        return self.run("squeue", "-h", "-o", "%i").stdout.split()

    def wait_no_jobs(self, timeout: float = 30) -> None:
        """Wait until the queue is empty (a cancelled job takes a moment to go)."""
        deadline = time.monotonic() + timeout
        while self.jobs():
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still in the queue: {self.run('squeue').stdout}")
            time.sleep(0.2)


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _config(folder: Path, node: str, cpus: int, memory_mb: int) -> str:
    # No cgroups (proctrack/linuxproc, task/none): runs in containers and unprivileged VMs.
    return f"""\
ClusterName=oremda{secrets.token_hex(3)}
FirstJobId={1000 + secrets.randbelow(10**6)}
SlurmctldHost={node}
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge/munge.sock
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=pmi2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdParameters=config_overrides
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName={node} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def slurm_cluster(folder: Path | None = None, cpus: int = 4, memory_mb: int = 8000, timeout: float = 60):
    """Start munged, slurmctld and slurmd from a generated config; stop them by pid afterwards.

    ``cpus`` may exceed the machine's cores (Slurm trusts the config, and the partition
    oversubscribes), so a job of N tasks fits on a small machine.
    """
    made = folder is None
    folder = Path(tempfile.mkdtemp(prefix="oremda-slurm-")) if folder is None else folder
    node = socket.gethostname().split(".")[0]
    folder.chmod(0o755)  # munged wants its socket's folders searchable by all
    munge, secret = folder / "munge", folder / "munge-key"
    for sub in ("state", "spool", "munge"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    secret.mkdir(mode=0o700, exist_ok=True)  # the key: a 1 KiB random file of mode 0400 in a 0700 folder
    key = secret / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o400)
    conf = folder / "slurm.conf"
    conf.write_text(_config(folder, node, cpus, memory_mb))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    commands = {
        "munged": [_sbin("munged"), "-F", f"--key-file={key}", f"--socket={munge}/munge.sock",
                   f"--pid-file={munge}/munged.pid", f"--log-file={munge}/munged.log", f"--seed-file={munge}/seed"],
        "slurmctld": [_sbin("slurmctld"), "-D", "-f", str(conf)],
        "slurmd": [_sbin("slurmd"), "-D", "-f", str(conf)],
    }  # fmt: skip
    cluster = Cluster(folder, conf)
    try:
        with ExitStack() as stack:
            for name in DAEMONS:
                log = stack.enter_context(open(folder / f"{name}.out", "wb"))
                process = subprocess.Popen(commands[name], env=env, stdout=log, stderr=subprocess.STDOUT)
                stack.callback(_stop, process)
                if name == "munged":
                    _wait(lambda: (munge / "munge.sock").exists(), process, name, folder, timeout)
            _wait(lambda: _node_idle(cluster), process, "slurmd", folder, timeout)
            stack.callback(_end_jobs, cluster)
            yield cluster
    finally:
        _sweep(conf)  # slurmstepd and a job's processes outlive slurmd by design: end what is left of ours
        if made:
            shutil.rmtree(folder, ignore_errors=True)


def _end_jobs(cluster: Cluster, timeout: float = 20) -> None:
    """Cancel every job still queued or running (a failed test may leave one)."""
    jobs = cluster.jobs()
    if jobs:
        subprocess.run(["scancel", *jobs], env=cluster.env, capture_output=True)
        try:
            cluster.wait_no_jobs(timeout)
        except TimeoutError:
            pass  # _sweep ends their processes


def processes(conf: Path) -> list[int]:
    """Pids of processes whose environment names this cluster's config.

    slurmd passes ``SLURM_CONF`` to each ``slurmstepd``, and jobs submitted with
    :attr:`Cluster.env` carry it to their commands and MPI ranks; no other process has
    this temporary path.
    """
    marker = f"SLURM_CONF={conf}".encode()
    ours = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    ours.append(int(entry.name))
            except OSError:
                continue
    return ours


def _sweep(conf: Path) -> None:
    """Kill, by pid, what is left of this cluster's processes (see :func:`processes`)."""
    ours = processes(conf)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in ours:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while any(running(pid) for pid in ours) and time.monotonic() < deadline:
            time.sleep(0.1)


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _node_idle(cluster: Cluster) -> bool:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], env=cluster.env, capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.split() == ["idle"]


def _wait(ready, process: subprocess.Popen, name: str, folder: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(folder.glob("*.out")))
            logs += "".join(f"\n--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(folder.glob("*.log")))
            raise RuntimeError(f"{name} did not come up (exit status {process.poll()}):\n{logs}")
        time.sleep(0.1)


def _main() -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly on SIGTERM too
    with slurm_cluster() as cluster:
        print(f"export SLURM_CONF={cluster.conf}   # Ctrl-C (or SIGTERM) stops the cluster", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    _main()
