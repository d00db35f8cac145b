"""MPI ranks as warm workers: the kernel launches one ``mpiexec`` job and drives it.

The kernel (or CLI) is the controller and never an MPI rank, so this works from an
ordinary Jupyter kernel on a login or compute node: ``mpi4py`` is imported only inside
the job (:mod:`oremda_lab.worker.rank`).

State and policy
----------------
* One MPI job of ``ranks`` processes, started on the first :meth:`MPIRuntime.launch`
  with the configured launcher (``mpiexec -n N`` by default; ``srun -n N`` under
  Slurm) and kept warm. Every rank connects back to the runtime's hub and says HELLO:
  over the session's Unix socket when it runs on the kernel's machine, over TCP
  (``control_host``) otherwise.
* :meth:`MPIRuntime.launch` is this runtime's adapter: it loads the slot's operator on
  every rank (an import, once), so any node may run on any rank, and returns a
  *hosted* handle (no HELLO of its own; alive while the job and its ranks are).
  ``_ranks``: rank -> its control connection, lock, pid and whether it sees the
  kernel's shared-memory session.
* Placement comes one way, from the node's JSON fields (:attr:`Task.extra`):
  ``"mpi": {"ranks": [0, 1], "split": ..., "join": ...}`` or upstream's
  ``run_locations``/``parallel*`` fields; else it is automatic. A data-parallel
  operator (``"parallel"`` in operator.json, or upstream's node-level ``parallel``
  fields) runs on all its ranks; any other runs on one, chosen once per node and
  spread over the ranks on the kernel's machine.
* A task holds the locks of its ranks (taken in rank order, so tasks never deadlock),
  sends RUN to each and waits for one reply from each, every wait bounded and
  watching the job and rank processes. A dead rank, a hung rank or a job that fails to
  start becomes a :class:`NodeFailure` with the job's log tail; the whole job is then
  killed (an MPI job does not survive a lost rank) and the next ``start`` launches a
  new one.

Operator images (``images="podman"`` or ``"apptainer"``): the hybrid model of HPC
centres. The host's launcher starts one container per rank, running the rank program
(:mod:`oremda_lab.worker.rank`, shipped in every image's worker layer) in the
operator's image with the launcher's MPI bound in (mpi4py and the MPI library of the
kernel's environment, so the ranks speak the launcher's PMI), the session mounted at
its own path, the data folder at ``/data``, and the host's network, IPC, process and
host-name namespaces (PMI, MPI shared memory, liveness by pid). Operators of different
images run in different jobs (``_jobs``: one per image); data moves between them
through the session, as between local workers.

Data: ranks on the kernel's machine read inputs as zero-copy views of the session,
each taking only its slice of a split input; ranks elsewhere receive their slice by
MPI from a rank that sees the session, or, when an earlier node on remote ranks made
the input, from the rank that kept it (``_resident``: object name -> rank). Partial
outputs join with MPI collectives (``Reduce``, ``Gatherv``) on the task's first rank.
No array is pickled.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from oremda_lab.dataplane.arena import Arena, owner_record, signal_group
from oremda_lab.dataplane.lazy import JOIN_METHODS
from oremda_lab.registry import names_image
from oremda_lab.runtime.base import (
    NodeFailure,
    Runtime,
    Task,
    TaskResult,
    WorkerHandle,
    _Worker,
    end_group,
    process_alive,
    wait_for_message,
)
from oremda_lab.runtime.docker import DATA_MOUNT, OPERATOR_DIR, PYTHON, SOURCE_DIGEST_LABEL, image_ref
from oremda_lab.spec.operator import OperatorSpec
from oremda_lab.spec.pipeline import operator_name
from oremda_lab.worker import protocol
from oremda_lab.worker import rank as rank_program

DEFAULT_LAUNCHER = ("mpiexec", "-n", "{ranks}")
LAUNCHER_ENV = "OREMDA_MPI_LAUNCHER"  # a site's launcher, e.g. "srun -n {ranks} --mpi=pmix"
_SETTLE = 2.0
_TERM_GRACE = 3.0
_RANK_SPEC = OperatorSpec(name="mpi-rank")
# Ranks are the parallelism: one BLAS/OpenMP thread each unless the user says otherwise.
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Node fields upstream's operator config used for placement; kept as they are.
UPSTREAM_KEYS = ("run_locations", "parallel", "parallel_output_to_join", "parallel_output_join_method")
JOB_LABEL = "oremda.mpi-job"  # on the containers of a job's ranks
IMAGE_SITE = "/opt/oremda/lib"  # where images keep this package's worker half
_MPI_MOUNT = "/opt/oremda/mpi"  # where the bound MPI (mpi4py, libmpi) appears in a rank's container
_PMI_PREFIXES = ("PMI", "PMIX", "MPI_LOCAL", "HYDRA", "SLURM")
# A rank's parent in its container: runs the rank program (the arguments after the
# first), forwards SIGTERM/SIGINT to it, and writes its exit status (negative: its
# signal) to <first argument>-pid<rank pid>.status.
RANK_WRAPPER = """
import signal, subprocess, sys
child = subprocess.Popen([sys.executable, *sys.argv[2:]], close_fds=False)
for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda n, _frame: child.send_signal(n))
code = child.wait()
with open(f"{sys.argv[1]}-pid{child.pid}.status", "w") as out:
    out.write(str(code))
sys.exit(code if code >= 0 else 128 - code)
"""
# Run by the launcher per rank: hands the PMI descriptor (PMI_FD) to `podman run`, which
# passes descriptors 3..N only when all are open, then becomes that command.
_PASS_PMI_FD = """
import os, sys
fd = int(os.environ.get("PMI_FD") or 0)
for n in range(3, fd):
    try:
        os.fstat(n)
    except OSError:
        spare = os.open(os.devnull, os.O_RDONLY)
        if spare != n:
            os.dup2(spare, n)
            os.close(spare)
for n in range(3, fd + 1):
    os.set_inheritable(n, True)
args = [sys.argv[1], "run", f"--preserve-fds={max(fd - 2, 0)}", *sys.argv[2:]]
os.execvp(args[0], args)
"""


class MPIJob(WorkerHandle):
    """The launcher process (``mpiexec``/``srun``), its log, and the rank pids it hosts."""

    def __init__(self, process: subprocess.Popen, log: Path, key: str = "", workers: dict[int, _Worker] | None = None):
        self.process = process
        self.leader = owner_record(process.pid)  # the launcher leads the job's process group
        self.log = log
        self.key = key  # what its ranks run in: "" (the kernel's Python) or an operator image
        self.workers: dict[int, _Worker] = dict(workers or {})  # rank -> its control connection and lock
        self.ranks: dict[int, dict[str, Any]] = {}  # owner records of the ranks on this machine
        self.local: dict[int, bool] = {}  # rank -> whether it maps the kernel's session
        self.loaded: dict[str, OperatorSpec] = {}  # operator name -> what the ranks imported
        self.assigned: dict[str, int] = {}  # unplaced node -> the rank it sticks to
        self.resident: dict[str, int] = {}  # object name -> remote rank that keeps a copy
        self.shared_files: set[str] = set()  # the MPI library's own /dev/shm segments
        self.cleanup: Callable[[], None] | None = None  # what else ending it takes (containers)

    def note_shared_files(self) -> None:
        """Remember the shared-memory files the ranks mapped (MPICH: ``mpich_shm_*``).

        MPI libraries unlink these at ``MPI_Finalize``; a killed job leaves them behind
        in /dev/shm, so :meth:`kill` removes them.
        """
        for rank in self.ranks.values():
            if process_alive(rank):
                self.shared_files |= rank_program.mpi_shared_files(rank["pid"])

    def alive(self) -> bool:
        return self.process.poll() is None

    def rank_status(self) -> int | None:
        """The exit status of a rank that ended badly, as its container's wrapper recorded it.

        Container engines report a rank's death to no one the launcher hears in time
        (``podman run`` exits only after the engine cleaned up), so in images each rank
        runs under a wrapper that writes its exit status next to the job's log.
        """
        statuses = []
        for rank in self.ranks.values():
            with contextlib.suppress(OSError, ValueError):
                statuses.append(int(Path(f"{self.log.with_suffix('')}-pid{rank['pid']}.status").read_text()))
        return next((s for s in statuses if s != 0), None)

    def healthy(self) -> bool:
        """Whether the job and every one of its ranks still run."""
        return self.alive() and all(w.handle.alive() for w in self.workers.values())

    def exit_status(self) -> int | None:
        return self.process.poll()

    def kill(self) -> None:
        """Terminate the launcher's process group, then kill it and any rank left over."""
        self.note_shared_files()
        end_group(self.leader, self.alive, _TERM_GRACE)
        signal_group(self.leader, signal.SIGKILL)  # stragglers that outlived the launcher
        for rank in self.ranks.values():
            # MPICH makes each rank lead a process group of its own: an operator's children are in it.
            signal_group(rank, signal.SIGKILL)
            if process_alive(rank):  # a rank that leads no group of its own (another launcher)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(rank["pid"], signal.SIGKILL)
        self.process.wait()
        if self.cleanup is not None:
            self.cleanup()
        for path in self.shared_files:
            Path(path).unlink(missing_ok=True)


class RankHandle(WorkerHandle):
    """One rank of the job: alive while the job and (when local) its process are."""

    def __init__(self, job: MPIJob, rank: int):
        self.job = job
        self.rank = rank

    def alive(self) -> bool:
        if not self.job.alive():
            return False
        rank = self.job.ranks.get(self.rank)
        return rank is None or process_alive(rank)

    def exit_status(self) -> int | None:
        return self.job.exit_status()

    def log_tail(self, lines: int = 40) -> str:
        return self.job.log_tail(lines)

    def kill(self) -> None:
        self.job.kill()


class HostedHandle(WorkerHandle):
    """An operator loaded by every rank of a job: alive while the job and all its ranks are.

    Ending it ends nothing: the job hosts other operators too (the runtime ends the job).
    """

    hosted = True

    def __init__(self, job: MPIJob):
        self.job = job

    def alive(self) -> bool:
        return self.job.healthy()

    def exit_status(self) -> int | None:
        return self.job.exit_status()

    def log_tail(self, lines: int = 40) -> str:
        return self.job.log_tail(lines)

    def kill(self) -> None:
        """Nothing to end: the operator stays loaded in the job until the runtime drops it."""


class MPIRuntime(Runtime):
    """Operator workers hosted by the ranks of one MPI job.

    Parameters
    ----------
    arena
        The engine's shared-memory session.
    ranks
        Number of MPI processes.
    launcher
        The launcher command; ``{ranks}`` is replaced by the rank count (appended when
        absent). Default: ``OREMDA_MPI_LAUNCHER`` split like a shell would, else
        ``["mpiexec", "-n", "{ranks}"]``; e.g. ``["srun", "-n", "{ranks}", "--mpi=pmix"]``
        under Slurm.
    control_host
        Address ranks on other machines use to reach the kernel over TCP (e.g. the
        kernel node's high-speed interface name or IP). Unset: single machine only.
    remote_ranks
        Ranks that act as if on another machine (tests the multi-node data path on
        one machine).
    env
        Extra environment for the job.
    python
        The interpreter the ranks run (the kernel's by default; without ``images``).
    images
        ``"podman"`` or ``"apptainer"``: each rank runs its operators inside the
        operator's image (see the module's docstring). None: in ``python``.
    binds
        With ``images``: host path -> path in the container of the MPI to bind in
        (default: the kernel environment's mpi4py and MPI library, see :func:`site_mpi`).
    sif_dir
        With ``images="apptainer"``: the folder of the SIF files.
    keep_bytes
        How much a rank off the kernel's machine keeps of the outputs it made, so the
        next node on such ranks reads them from it directly.
    **options
        ``data_dir``, ``timeout``, ``start_timeout`` as for every runtime.

    Examples
    --------
    >>> from oremda_lab.runtime import make_runtime       # doctest: +SKIP
    >>> runtime = make_runtime("mpi", arena, ranks=4)     # doctest: +SKIP
    """

    name = "mpi"
    splits_parallel = True  # a data-parallel task runs on all its ranks, each reading its own part

    def __init__(
        self,
        arena: Arena,
        *,
        ranks: int = 2,
        launcher: Sequence[str] | None = None,
        control_host: str | None = None,
        remote_ranks: Iterable[int] = (),
        env: dict[str, str] | None = None,
        python: str = sys.executable,
        keep_bytes: int = 1 << 30,
        images: str | None = None,
        binds: dict[str, str] | None = None,
        sif_dir: str | Path | None = None,
        **options: Any,
    ):
        if int(ranks) < 1:
            raise ValueError(f"ranks must be at least 1, not {ranks}")
        if images is not None and images not in IMAGE_ENGINES:
            raise ValueError(f"images must be one of {', '.join(IMAGE_ENGINES)}, not {images!r}")
        super().__init__(arena, **options)
        self.ranks = int(ranks)
        self.launcher = list(launcher or shlex.split(os.environ.get(LAUNCHER_ENV, "")) or DEFAULT_LAUNCHER)
        self.remote_ranks = sorted({int(r) for r in remote_ranks})
        self.env = dict(env or {})
        self.python = python
        self.images: RankImages | None = None
        if images is not None:
            self.images = IMAGE_ENGINES[images](binds, sif_dir)
        self._image_ids: dict[str, str] = {}
        self._jobs: dict[str, MPIJob] = {}  # job key (see job_key) -> the job
        self.keep_bytes = int(keep_bytes)
        self._job_lock = threading.Lock()
        self._seq = itertools.count(1)
        # ranks on other machines: the hub's HELLO handshake over TCP too
        self._tcp = self.listen_tcp(control_host or "127.0.0.1") if control_host or self.remote_ranks else None

    # -- placement -------------------------------------------------------------------

    def plan(self, task: Task, job: MPIJob) -> dict[str, Any]:
        """Where and how ``task`` runs: compute ranks, leader, split and join.

        From the node's JSON fields (:attr:`Task.extra`: ``mpi`` or upstream's
        ``run_locations``/``parallel*``), else automatic.
        """
        options = node_options(task.extra)
        declared = dict(task.spec.parallel or {})
        upstream_parallel = bool(options.get("parallel")) and not isinstance(options.get("parallel"), dict)
        parallel = bool(declared) or upstream_parallel or bool(options.get("split")) or bool(options.get("join"))
        ranks = options.get("ranks", options.get("run_locations"))
        if isinstance(ranks, int):
            ranks = [ranks]
        if ranks is not None:
            bad = [r for r in ranks if not isinstance(r, int) or not 0 <= r < self.ranks]
            if bad or not ranks:
                raise NodeFailure(f"{task.node}: ranks {ranks} are not within the job's {self.ranks} ranks")
            ranks = sorted(set(ranks))
        split = options.get("split", declared.get("split"))
        join: dict[str, dict[str, Any]] = {}
        for port, how in {**declared.get("join", {}), **options.get("join", {})}.items():
            join[port] = {"method": how} if isinstance(how, str) else dict(how)
        if options.get("parallel_output_to_join"):
            join[options["parallel_output_to_join"]] = {"method": options.get("parallel_output_join_method", "stack")}
        for port, how in join.items():
            if how.get("method") not in JOIN_METHODS:
                raise NodeFailure(f"{task.node}: output {port!r}: join method {how.get('method')!r} is not one of "
                                  f"{', '.join(JOIN_METHODS)}")  # fmt: skip
        if split:
            port, axis = split.get("port"), split.get("axis", 0)
            if port not in task.spec.inputs:
                raise NodeFailure(f"{task.node}: split port {port!r} is not an input of {task.spec.name}")
            ref = (task.inputs.get(port) or {}).get("ref")
            # Checked here, where a mistake is a clear error, not a rank stuck waiting for a slice.
            if ref and (ref.get("kind") == "bytes" or not isinstance(axis, int) or not 0 <= axis < len(ref["shape"])):
                raise NodeFailure(
                    f"{task.node}: cannot split input {port!r} (shape {tuple(ref.get('shape', ()))}) along axis {axis}"
                )
        if parallel:
            compute = ranks or list(range(self.ranks))
        else:
            compute = [ranks[0]] if ranks else [self._auto_rank(job, task.node)]
        local = [r for r in sorted(job.local) if job.local[r]]
        if not local:
            raise NodeFailure("no MPI rank runs on the kernel's machine; at least one must, to reach its data")
        leader = compute[0] if job.local.get(compute[0]) else local[0]
        holders = {}
        if any(not job.local.get(r) for r in compute):  # ranks that map the session need no sender
            for port, wire in task.inputs.items():
                holder = job.resident.get((wire.get("ref") or {}).get("name", ""))
                if holder is not None:
                    holders[port] = holder
        return {
            "compute": compute, "leader": leader, "split": split, "join": join, "parallel": parallel,
            "holders": holders,
        }  # fmt: skip

    def parallel_readers(self) -> int:
        """Every rank reads its part of a data-parallel task."""
        return self.ranks

    def _auto_rank(self, job: MPIJob, node: str) -> int:
        """Each unplaced node sticks to one rank, spread over the ranks on this machine."""
        if node not in job.assigned:
            local = [r for r in range(self.ranks) if job.local.get(r)] or list(range(self.ranks))
            load = {r: 0 for r in local}
            for r in job.assigned.values():
                if r in load:
                    load[r] += 1
            job.assigned[node] = min(local, key=lambda r: (load[r], r))
        return job.assigned[node]

    # -- the runtime interface ---------------------------------------------------------

    def launch(self, spec: OperatorSpec, worker_id: str) -> WorkerHandle:
        """Start the job unless it runs, and load ``spec``'s operator on every rank.

        Ranks import an operator's module once: new code for a loaded operator needs a
        new job (every slot's handle on the old one then reports it dead, and the next
        ``start`` loads them again).
        """
        folder = self.operator_folder(spec)
        key = self.job_key(spec)
        if self.images is not None and spec.path is not None:  # as the container runtimes check
            built = self.images.built_from(key)
            if built and built != spec.digest:
                raise NodeFailure(
                    f"image {key} was built from another version of {spec.name} than {spec.path}; rebuild it: "
                    f"oremda-lab build --engine {self.images.engine} {spec.name}"
                )
        with self._job_lock:
            job = self._jobs.get(key)
            loaded = job.loaded.get(spec.name) if job is not None else None
            if job is not None and loaded is not None and loaded.digest != spec.digest:
                self._drop_job(job, polite=True)
            job = self._ensure_job(key)
            if spec.name not in job.loaded:
                replies = self._broadcast(job, rank_program.LOAD, self.start_timeout, operators={spec.name: folder})
                errors = [f"rank {r}: {reply['errors'][spec.name]}" for r, reply in replies.items() if reply["errors"]]
                if errors:
                    raise NodeFailure(f"could not load {spec.name}: " + "; ".join(errors), log_tail=job.log_tail())
                job.loaded[spec.name] = spec
            return HostedHandle(job)

    def job_key(self, spec: OperatorSpec) -> str:
        """Which job hosts ``spec``: ``""`` (ranks in the kernel's Python); with images, its image."""
        return self.images.reference(spec) if self.images is not None else ""

    def operator_folder(self, spec: OperatorSpec) -> str:
        """Where the ranks find ``spec``'s operator folder (in its image: where images keep it)."""
        if self.images is not None:
            return OPERATOR_DIR
        if spec.path is None:
            raise NodeFailure(f"operator {spec.name} has no folder to run from")
        return str(spec.path)

    def image_digest(self, spec: OperatorSpec) -> str:
        """With images: the id of ``spec``'s image (cache keys, run records); else its code's digest."""
        if self.images is None:
            return spec.digest
        ref = self.images.reference(spec)
        if ref not in self._image_ids:
            self._image_ids[ref] = self.images.image_id(ref)
        return self._image_ids[ref]

    def image_pin(self, spec: OperatorSpec) -> dict[str, str]:
        """With images: the image's reference and id; else empty."""
        if self.images is None:
            return {}
        return {"image": self.images.reference(spec), "image_id": self.image_digest(spec)}

    def submit(self, task: Task) -> Future[TaskResult]:
        """Run ``task`` on its ranks; the future fails with :class:`NodeFailure`."""
        return self._pool.submit(self._run_mpi, task)

    def environment(self, slot: str) -> dict[str, Any] | None:
        """The environment rank 0 of the job hosting ``slot`` reported (each rank said HELLO with its own)."""
        worker = self._workers.get(slot)
        reported = super().environment(_rank_slot(self.job_key(worker.spec), 0)) if worker is not None else None
        return {**reported, "id": self.environment_id(worker.spec)} if worker and reported else None

    def environment_id(self, spec: OperatorSpec) -> str:
        """As for every runtime (``"kernel"`` or ``"image:<id>"``); a rank itself hosts no operator: ``""``."""
        return "" if spec is _RANK_SPEC else super().environment_id(spec)

    def stop(self) -> None:
        """Ask every rank to finish, then end the job by force if it lingers."""
        if self._stopped:
            return
        with self._job_lock:
            for job in list(self._jobs.values()):
                self._drop_job(job, polite=True)
        super().stop()

    # -- the job -------------------------------------------------------------------

    def command(self, job_id: str, key: str = "") -> list[str]:
        """The launcher command line for a job (``key``: see :meth:`job_key`)."""
        launcher = [part.replace("{ranks}", str(self.ranks)) for part in self.launcher]
        if not any("{ranks}" in part for part in self.launcher):
            launcher.append(str(self.ranks))
        cmd = [
            *launcher, *self.rank_command(job_id, key), "-m", "oremda_lab.worker.rank",
            "--connect", self.address, "--session", str(self.arena.path),
            "--host", socket.gethostname(), "--job", job_id, "--keep-bytes", str(self.keep_bytes),
        ]  # fmt: skip
        if self._tcp is not None:
            host, port = self._tcp
            cmd += ["--tcp", f"{host}:{port}"]
        if self.remote_ranks:
            cmd += ["--remote", ",".join(map(str, self.remote_ranks))]
        return cmd

    def rank_command(self, job_id: str, key: str) -> list[str]:
        """What each rank runs, up to the interpreter: the kernel's Python, or a container of image ``key``."""
        if self.images is None:
            return [self.python]
        passed = sorted({*_ONE_THREAD, *self.worker_env(), *self.env})
        return self.images.command(key, job_id, str(self.arena.path), str(self.data_dir), passed)

    def rank_env(self) -> dict[str, str]:
        """The environment the launcher and its ranks get.

        Without ``SLURM_EXPORT_ENV``: a kernel started by ``sbatch --export=LIST``
        (batchspawner's way) inherits it, and ``srun`` would then pass the ranks only
        that list, not the session's key.
        """
        data_dir = DATA_MOUNT if self.images is not None else None
        inherited = {k: v for k, v in os.environ.items() if k != "SLURM_EXPORT_ENV"}
        return {**_ONE_THREAD, **inherited, **self.worker_env(data_dir), **self.env}

    def check(self) -> NodeFailure | None:
        """Why no job can start here (no MPI, no container engine), or None."""
        if (self.python == sys.executable or self.images) and importlib.util.find_spec("mpi4py") is None:
            return NodeFailure("mpi4py is not installed in this environment: `pip install mpi4py mpich`")
        return self.images.check() if self.images is not None else None

    def end_job(self, job_id: str, key: str) -> None:
        """Whatever ending a job takes beyond its processes (with images: their containers)."""
        if self.images is not None:
            self.images.end(job_id)

    def _ensure_job(self, key: str) -> MPIJob:
        """The job ``key`` names, started unless a healthy one runs (caller holds ``_job_lock``).

        Raises :class:`NodeFailure` when it cannot start.
        """
        if self._stopped:
            raise NodeFailure("the MPI runtime was stopped")
        job = self._jobs.get(key)
        if job is not None:
            if job.healthy():
                return job
            self._drop_job(job)
        launcher = shutil.which(self.launcher[0], path=_search_path(self.python))
        if launcher is None:
            raise NodeFailure(
                f"MPI launcher {self.launcher[0]!r} not found on PATH: install MPI (e.g. `pip install mpi4py mpich`) "
                "or pass launcher=[...] (e.g. ['srun', '-n', '{ranks}'])"
            )
        failure = self.check()
        if failure is not None:
            raise failure
        job_id = f"mpi-{uuid.uuid4().hex[:8]}"
        log = self.arena.path / "run" / f"{job_id}.log"
        workers = {}
        for rank in range(self.ranks):
            worker = _Worker(_rank_slot(key, rank), _RANK_SPEC, f"{job_id}-r{rank}", None)  # type: ignore[arg-type]
            workers[rank] = worker
            self._expect(worker)
        command = self.command(job_id, key)
        command[0] = launcher
        try:
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self.rank_env(),
                    cwd=self.data_dir,
                    start_new_session=True,  # one process group to end, whatever the launcher spawns
                )
        except OSError as e:
            for worker in workers.values():
                self._unexpect(worker)
            raise NodeFailure(f"could not run the MPI launcher {command[0]}: {e}") from None
        job = MPIJob(process, log, key, workers)
        job.cleanup = lambda: self.end_job(job_id, key)
        for rank, worker in workers.items():
            worker.handle = RankHandle(job, rank)
        self._jobs[key] = job
        deadline = time.monotonic() + self.start_timeout
        for worker in workers.values():
            got = self.wait_hello(worker, deadline)
            if got == "died":
                raise self._drop_job(job, f"the MPI job exited during start-up (exit status {job.exit_status()})")
            if got == "timeout":
                raise self._drop_job(job, f"the MPI job's ranks did not all connect within {self.start_timeout:g} s")
        replies = self._broadcast(job, rank_program.LOAD, self.start_timeout, operators={})
        for rank, reply in replies.items():
            job.local[rank] = bool(reply.get("local"))
            if reply.get("local") and reply.get("pid"):
                job.ranks[rank] = owner_record(int(reply["pid"]))
        job.note_shared_files()
        return job

    def _drop_job(self, job: MPIJob, message: str = "", polite: bool = False, settle: bool = False) -> NodeFailure:
        """End ``job`` and forget it; returns a failure built from ``message``.

        ``settle``: a rank died, so give the launcher a moment to notice, abort the job
        and log why (MPICH: "KILLED BY SIGNAL: 9"), which names the rank's exit status.
        """
        workers = list(job.workers.values())
        if self._jobs.get(job.key) is job:
            del self._jobs[job.key]
        for worker in workers:
            self._unexpect(worker)
        if settle:
            try:
                job.process.wait(_SETTLE)
            except subprocess.TimeoutExpired:
                pass
        if polite:
            for worker in workers:
                try:
                    if worker.conn is not None:
                        worker.conn.send_bytes(protocol.encode(protocol.SHUTDOWN))
                except OSError:
                    pass
            try:
                job.process.wait(_TERM_GRACE)
            except subprocess.TimeoutExpired:
                pass
        job.kill()
        for worker in workers:
            if worker.conn is not None:
                worker.conn.close()
        tail = job.log_tail()
        status = _rank_status(tail) if self.images is None else job.rank_status()
        if status is not None:
            message += f" (exit status {status})"
        return NodeFailure(message, log_tail=tail, exit_status=status)

    def _broadcast(self, job: MPIJob, op: str, timeout: float, **fields: Any) -> dict[int, dict[str, Any]]:
        """Send one control message to every rank of ``job`` and collect each reply (bounded)."""
        ranks = sorted(job.workers)
        workers = [job.workers[r] for r in ranks]
        for worker in workers:
            worker.lock.acquire()
        try:
            message = protocol.encode(op, **fields)
            for worker in workers:
                self._send(job, worker, message)
            deadline = time.monotonic() + timeout
            return {
                rank: self._reply(job, worker, deadline, "loading operators")
                for rank, worker in zip(ranks, workers, strict=True)
            }
        finally:
            for worker in workers:
                worker.lock.release()

    def _send(self, job: MPIJob, worker: _Worker, message: bytes) -> None:
        try:
            assert worker.conn is not None
            worker.conn.send_bytes(message)
        except (OSError, AssertionError):
            raise self._drop_job(job, f"MPI rank {worker.id} is gone") from None

    def _reply(
        self, job: MPIJob, worker: _Worker, deadline: float, doing: str, on_progress: Callable | None = None
    ) -> dict[str, Any]:
        """One message from a rank, or a failure if it dies or the deadline passes (PROGRESS: to ``on_progress``)."""
        assert worker.conn is not None
        got = wait_for_message(worker.conn, worker.handle, deadline, on_progress)
        if isinstance(got, dict):
            return got
        if got == "timeout":
            failure = self._drop_job(job, f"MPI rank {worker.id} did not answer within the timeout while {doing}")
        else:
            rank = worker.id.rsplit("-r", 1)[-1]
            failure = self._drop_job(job, f"MPI rank {rank} died while {doing}", settle=True)
        raise failure

    # -- tasks -------------------------------------------------------------------------

    def _run_mpi(self, task: Task) -> TaskResult:
        job = self._jobs.get(self.job_key(task.spec))
        if job is None or task.spec.name not in job.loaded:
            raise NodeFailure(f"no running MPI worker for {task.spec.name}; start() it first")
        plan = self.plan(task, job)
        participants = sorted(set(plan["compute"]) | {plan["leader"]} | set(plan["holders"].values()))
        try:
            workers = [job.workers[r] for r in participants]
        except KeyError:
            raise NodeFailure(f"the MPI job ended before {task.node} could run") from None
        for worker in workers:
            worker.lock.acquire()
        try:
            if self._jobs.get(job.key) is not job:
                raise NodeFailure(f"the MPI job ended before {task.node} could run")
            remote = [r for r in participants if not job.local.get(r)]
            message = protocol.encode(
                protocol.RUN, task=task.id, seq=next(self._seq), node=task.node, operator=task.spec.name,
                slot=task.slot, params=task.params, inputs=task.inputs, remote=remote, **plan,
            )  # fmt: skip
            for worker in workers:
                self._send(job, worker, message)
            deadline = time.monotonic() + self.timeout
            replies = {}
            for rank, worker in zip(participants, workers, strict=True):
                try:
                    replies[rank] = self._reply(job, worker, deadline, f"running {task.node}", task.on_progress)
                except NodeFailure:
                    self.arena.discard(f"{task.id}--")
                    raise
        finally:
            for worker in workers:
                worker.lock.release()
        for rank, reply in replies.items():  # outputs remote ranks keep for the next node
            for name in reply.get("evicted", ()):
                if job.resident.get(name) == rank:
                    del job.resident[name]
            for name in reply.get("kept", ()):
                job.resident[name] = rank
        errors = [r for r in replies.values() if r["op"] == protocol.ERROR]
        leader = replies[plan["leader"]]
        if leader["op"] == protocol.ERROR or errors:
            reply = leader if leader["op"] == protocol.ERROR else errors[0]
            self.arena.discard(f"{task.id}--")
            raise NodeFailure(reply["error"], traceback=reply.get("traceback", ""), log_tail=job.log_tail())
        return TaskResult(leader["outputs"], leader.get("duration_s", 0.0))


def site_mpi() -> dict[str, str]:
    """Host path -> container path of the MPI the kernel's environment has (mpi4py, its MPI library).

    Binding the launcher's own MPI into the images makes the ranks speak its PMI (the
    "bind" model of HPC containers). Found: mpi4py's package folder and the folder of
    ``libmpi.so*`` in the environment's ``lib`` (pip's ``mpich`` wheel puts it there).
    A site whose MPI lives elsewhere passes ``binds=`` instead.
    """
    found = importlib.util.find_spec("mpi4py")
    if found is None or found.origin is None:
        return {}
    binds = {str(Path(found.origin).parent): f"{_MPI_MOUNT}/mpi4py"}
    lib = Path(sys.prefix) / "lib"
    if any(lib.glob("libmpi.so*")):
        binds[str(lib)] = f"{_MPI_MOUNT}/lib"
    return binds


class RankImages:
    """How each rank runs inside an operator's image; subclasses name a container engine."""

    engine = ""
    prefix = ""  # of local image references

    def __init__(self, binds: dict[str, str] | None = None, sif_dir: str | Path | None = None):
        self.binds = dict(site_mpi() if binds is None else binds)

    def reference(self, spec: OperatorSpec) -> str:
        """The image hosting ``spec``: the one it was read from, else its version's tag."""
        return spec.image or image_ref(spec.name, spec.version, self.prefix)

    def image_id(self, ref: str) -> str:
        """The image's id, or :class:`NodeFailure` when the engine lacks it."""
        raise NotImplementedError

    def built_from(self, ref: str) -> str | None:
        """The digest of the operator folder the image was built from (its label), where known."""
        return None

    def command(self, ref: str, job_id: str, session: str, data_dir: str, passed: Sequence[str]) -> list[str]:
        """A rank's command up to the image's Python (the rank program's arguments follow)."""
        raise NotImplementedError

    def check(self) -> NodeFailure | None:
        """Why ranks cannot run in images here, or None."""
        return None

    def end(self, job_id: str) -> None:
        """Remove what the job's ranks left (containers)."""

    def python_path(self) -> dict[str, str]:
        """The image's own packages first, then the bound MPI."""
        return {"PYTHONPATH": f"{IMAGE_SITE}:{_MPI_MOUNT}", "LD_LIBRARY_PATH": f"{_MPI_MOUNT}/lib"}


class PodmanRanks(RankImages):
    """One ``podman run`` per rank, started by the launcher (tested here with MPICH's hydra).

    A PMI file descriptor (``PMI_FD``: hydra's default, Slurm's ``--mpi=pmi2``) is
    passed into the container (``--preserve-fds``), ``PMI*`` variables too; the ranks
    share the host's network (PMI over TCP, the kernel's TCP control), IPC (MPI shared
    memory), pid (liveness, the kernel-death watch) and host name (MPI's same-node test).
    The local ``podman`` command runs them, so images are those of the local store.
    """

    engine = "podman"
    prefix = "localhost/"

    def check(self) -> NodeFailure | None:
        if shutil.which("podman") is None:
            return NodeFailure("images='podman' needs the podman command on PATH")
        return None

    def image_id(self, ref: str) -> str:
        return f"sha256:{self._inspect(ref, '{{.Id}}').removeprefix('sha256:')}"

    def built_from(self, ref: str) -> str | None:
        return self._inspect(ref, f'{{{{index .Labels "{SOURCE_DIGEST_LABEL}"}}}}') or None

    @staticmethod
    def _inspect(ref: str, template: str) -> str:
        done = subprocess.run(
            ["podman", "image", "inspect", "--format", template, ref], capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            hint = f"oremda-lab build --engine podman {operator_name(ref)}"
            raise NodeFailure(f"no image {ref} in podman's local store; build it: {hint}")
        return done.stdout.strip().removeprefix("<no value>")

    def command(self, ref: str, job_id: str, session: str, data_dir: str, passed: Sequence[str]) -> list[str]:
        run = [
            "--rm", "--label", f"{JOB_LABEL}={job_id}",
            "--network", "host", "--ipc", "host", "--pid", "host", "--uts", "host",
            "--user", f"{os.getuid()}:{os.getgid()}", "--read-only", "--tmpfs", "/tmp",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            # runc under Podman may not raise these limits here (as for PodmanRuntime)
            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
            "-v", f"{session}:{session}:rw", "-v", f"{data_dir}:{DATA_MOUNT}:ro", "-w", DATA_MOUNT,
            *itertools.chain.from_iterable(("-v", f"{h}:{c}:ro") for h, c in self.binds.items()),
            *itertools.chain.from_iterable(("--env", f"{p}*") for p in _PMI_PREFIXES),
            *itertools.chain.from_iterable(("--env", name) for name in passed),
            *itertools.chain.from_iterable(("--env", f"{k}={v}") for k, v in self.python_path().items()),
            "--entrypoint", PYTHON, ref, "-c", RANK_WRAPPER, f"{session}/run/{job_id}",
        ]  # fmt: skip
        return [sys.executable, "-c", _PASS_PMI_FD, "podman", *run]

    def end(self, job_id: str) -> None:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            listed = subprocess.run(
                ["podman", "ps", "-aq", "--filter", f"label={JOB_LABEL}={job_id}"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if listed.stdout.split():
                subprocess.run(["podman", "rm", "-f", *listed.stdout.split()], capture_output=True, timeout=60)


class ApptainerRanks(RankImages):
    """One ``apptainer exec`` per rank (untested here: no Apptainer on this machine).

    Apptainer shares the host's network, IPC, pids and file descriptors by default and
    passes the environment (PMI variables included) through; the SIF is the operator's
    (``oremda-lab build --engine apptainer``).
    """

    engine = "apptainer"

    def __init__(self, binds: dict[str, str] | None = None, sif_dir: str | Path | None = None):
        super().__init__(binds)
        self.sif_dir = sif_dir

    def check(self) -> NodeFailure | None:
        if shutil.which("apptainer") is None and shutil.which("singularity") is None:
            return NodeFailure("images='apptainer' needs the apptainer (or singularity) command on PATH")
        return None

    def reference(self, spec: OperatorSpec) -> str:
        from oremda_lab.runtime.apptainer import sif_for_reference, sif_path

        if spec.image and names_image(spec.image):
            return str(sif_for_reference(spec.image, self.sif_dir))
        return str(sif_path(spec, folder=self.sif_dir))

    def image_id(self, ref: str) -> str:
        from oremda_lab.spec.operator import file_digest

        if not Path(ref).is_file():
            raise NodeFailure(f"no SIF image {ref}; build it: oremda-lab build --engine apptainer")
        return file_digest(Path(ref))

    def command(self, ref: str, job_id: str, session: str, data_dir: str, passed: Sequence[str]) -> list[str]:
        command = shutil.which("apptainer") or shutil.which("singularity") or "apptainer"
        binds = {session: session, **self.binds}
        return [
            command, "exec", "--bind", ",".join(f"{h}:{c}" for h, c in binds.items()),
            "--bind", f"{data_dir}:{DATA_MOUNT}:ro", "--pwd", DATA_MOUNT,
            *itertools.chain.from_iterable(("--env", f"{k}={v}") for k, v in self.python_path().items()),
            ref, PYTHON, "-c", RANK_WRAPPER, f"{session}/run/{job_id}",
        ]  # fmt: skip


IMAGE_ENGINES: dict[str, type[RankImages]] = {"podman": PodmanRanks, "apptainer": ApptainerRanks}


def node_options(extra: dict[str, Any]) -> dict[str, Any]:
    """A node's placement options from its JSON fields (``mpi`` and upstream's keys).

    Examples
    --------
    >>> node_options({"mpi": {"ranks": [0, 1]}, "parallel_output_join_method": "sum", "position": {}})
    {'ranks': [0, 1], 'parallel_output_join_method': 'sum'}
    """
    options = dict(extra.get("mpi") or {})
    options.update({k: extra[k] for k in UPSTREAM_KEYS if k in extra})
    return options


def _rank_status(log: str) -> int | None:
    """A dead rank's exit status from the launcher's report (negative: its signal).

    Examples
    --------
    >>> _rank_status("=   KILLED BY SIGNAL: 9 (Killed)")
    -9
    >>> _rank_status("EXIT CODE: 139 ... THE EXIT STRING: Segmentation fault (signal 11)")
    -11
    """
    killed = re.findall(r"KILLED BY SIGNAL: (\d+)|EXIT STRING: .*\(signal (\d+)\)", log)  # MPICH (hydra)
    if killed:
        return -int(next(n for n in killed[-1] if n))
    code = re.findall(r"EXIT CODE: (\d+)", log)
    return int(code[-1]) if code else None


def _rank_slot(key: str, rank: int) -> str:
    """The name a rank's HELLO report is kept under (see :meth:`Runtime.environment`)."""
    return f"mpi-rank-{rank}" + (f"@{key}" if key else "")


def _search_path(python: str) -> str:
    # pip's mpich puts mpiexec beside the interpreter, which may not be on PATH in a kernel
    return os.pathsep.join([os.environ.get("PATH", ""), str(Path(python).parent)])
