"""The embedded default: one warm process per worker, no container engine needed.

Workers are forked by a fork server (:mod:`oremda_lab.runtime._forkserver`) that this
runtime starts once and that has numpy, pyarrow and scipy imported already, so N
workers start in about the time of one. Each worker runs in its own session
(process group), its output going to a log file in the session's ``run/`` folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from oremda_lab.runtime.base import Runtime, WorkerHandle
from oremda_lab.spec.operator import OperatorSpec

_TERM_GRACE = 2.0


class ProcessHandle(WorkerHandle):
    """A forked worker: its pid, its log, and the status file the fork server writes."""

    def __init__(self, pid: int, log: Path):
        self.pid = pid
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
        for sig, wait in ((signal.SIGTERM, _TERM_GRACE), (signal.SIGKILL, 10.0)):
            if not self.alive():
                return
            try:
                os.killpg(self.pid, sig)  # the worker leads its own process group
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + wait
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.01)


class LocalRuntime(Runtime):
    """Workers as local processes, forked from this runtime's fork server."""

    name = "local"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._server: subprocess.Popen | None = None
        self._server_lock = threading.Lock()

    def launch(self, spec: OperatorSpec, worker_id: str) -> ProcessHandle:
        """Ask the fork server for a worker for ``spec``."""
        if spec.path is None:
            raise ValueError(f"operator {spec.name} has no folder to run from")
        log = self.arena.path / "run" / f"{worker_id}.log"
        request = {
            "args": self.worker_args(worker_id, spec.path),
            "env": self.worker_env(),
            "log": str(log),
            "cwd": str(self.data_dir),
        }
        with self._server_lock:
            server = self._fork_server()
            server.stdin.write(json.dumps(request).encode() + b"\n")
            server.stdin.flush()
            reply = server.stdout.readline()
        if not reply:
            self._server = None
            raise RuntimeError(f"the fork server exited (status {server.wait()})")
        return ProcessHandle(json.loads(reply)["pid"], log)

    def stop(self) -> None:
        """Stop the workers, then the fork server."""
        super().stop()
        with self._server_lock:
            if self._server is not None:
                self._server.stdin.close()
                self._server.stdout.close()
                try:
                    self._server.wait(5)
                except subprocess.TimeoutExpired:
                    self._server.kill()
                    self._server.wait()
                self._server = None

    def _fork_server(self) -> subprocess.Popen:
        if self._server is None or self._server.poll() is not None:
            with open(self.arena.path / "run" / "forkserver.log", "ab") as log:
                self._server = subprocess.Popen(
                    [sys.executable, "-m", "oremda_lab.runtime._forkserver"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    start_new_session=True,
                )
        return self._server
