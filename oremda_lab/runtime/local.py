"""The embedded default: one warm process per worker, no container engine needed.

Each operator runs in its environment (:mod:`oremda_lab.runtime.environments`): the
kernel's Python when that satisfies its requirements, else a cached virtual environment
created on first use. Workers are forked by a fork server
(:mod:`oremda_lab.worker.forkserver`), one per environment, started on first use and
holding numpy, pyarrow and scipy imported already, so N workers start in about the
time of one. A venv's fork server runs that venv's Python with only the worker half of
this package on its path. Each worker runs in its own session (process group), its
output going to a log file in the session's ``run/`` folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

from oremda_lab.dataplane.arena import kill_marked, owner_record
from oremda_lab.runtime.base import NodeFailure, Runtime, WorkerHandle, end_group
from oremda_lab.runtime.environments import (
    Environment,
    EnvironmentFailure,
    Progress,
    ensure_environment,
    worker_path,
)
from oremda_lab.spec.operator import OperatorSpec
from oremda_lab.worker import protocol


class ProcessHandle(WorkerHandle):
    """A forked worker: its pid, its log, and the status file the fork server writes."""

    def __init__(self, pid: int, log: Path):
        self.pid = pid
        self.leader = owner_record(pid)  # the worker leads its own process group
        self.log = log
        self.status_file = Path(f"{log}.status")

    def alive(self) -> bool:
        return not self.status_file.exists()

    def exit_status(self) -> int | None:
        try:
            return int(self.status_file.read_text())
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        end_group(self.leader, self.alive)


class LocalRuntime(Runtime):
    """Workers as local processes, forked from their environment's fork server."""

    name = "local"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._servers: dict[str, subprocess.Popen] = {}  # environment id -> its fork server
        self._server_lock = threading.Lock()
        self._environments_of: dict[tuple, Environment] = {}

    def launch(self, spec: OperatorSpec, worker_id: str) -> ProcessHandle:
        """Make ``spec``'s environment if needed, then ask its fork server for a worker."""
        if spec.path is None:
            raise NodeFailure(f"operator {spec.name} exists only as image {spec.image}; use --runtime docker|podman")
        slot, said = self.slot_of(worker_id), []

        def say(message: str) -> None:
            said.append(message)
            self.progress(slot, message)

        try:
            env = self.environment_of(spec, progress=say)
        except EnvironmentFailure as e:
            raise NodeFailure(str(e)) from None
        log = self.arena.path / "run" / f"{worker_id}.log"
        request = {
            "args": self.worker_args(worker_id, spec.path),
            "env": self.worker_env(),
            "log": str(log),
            "cwd": str(self.data_dir),
        }
        with self._server_lock:
            if self._stopped:  # stopped while the environment was being made: start nothing
                raise NodeFailure(f"the runtime stopped before {spec.name}'s worker started")
            if said and env.id not in self._servers:  # just made: its first worker compiles what it imports
                self.progress(slot, f"starting the first worker in environment {env.id} ...")
            server = self._fork_server(env)
            server.stdin.write(json.dumps(request).encode() + b"\n")
            server.stdin.flush()
            reply = server.stdout.readline()
        if not reply:
            self._servers.pop(env.id, None)
            raise RuntimeError(f"the fork server of environment {env.id} exited (status {server.wait()})")
        return ProcessHandle(json.loads(reply)["pid"], log)

    def environment_of(self, spec: OperatorSpec, progress: Progress | None = None) -> Environment:
        """``spec``'s environment (made on first use; remembered for this runtime's life)."""
        wanted = (spec.requirements, spec.python)
        env = self._environments_of.get(wanted)
        if env is None:
            env = self._environments_of[wanted] = ensure_environment(spec, progress)
        return env

    def environment_id(self, spec: OperatorSpec) -> str:
        return self.environment_of(spec).id

    def stop(self) -> None:
        """Stop the workers, then the fork servers, then whatever still carries this runtime's key.

        The fork servers take their workers' descendants along; the last sweep finds those
        that lost that chain (a fork server that was itself killed, say by the OOM killer).
        """
        super().stop()
        with self._server_lock:
            for server in self._servers.values():
                server.stdin.close()
                server.stdout.close()
                try:
                    server.wait(5)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
            self._servers.clear()
        kill_marked(protocol.AUTHKEY_ENV, self.authkey.hex())

    def _fork_server(self, env: Environment) -> subprocess.Popen:
        server = self._servers.get(env.id)
        if server is None or server.poll() is not None:
            options = {}
            if env.kind != "kernel":
                # Only the worker half on the path, and the cwd there too: ``-m`` puts the
                # cwd first on sys.path, and a source checkout there would shadow it.
                path = worker_path()
                options = {"cwd": path, "env": {**os.environ, "PYTHONPATH": str(path)}}
            with open(self.arena.path / "run" / f"forkserver-{env.id.replace(':', '-')}.log", "ab") as log:
                server = subprocess.Popen(
                    [env.python, "-m", "oremda_lab.worker.forkserver"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    start_new_session=True,
                    **options,
                )
            self._servers[env.id] = server
        return server
