"""The embedded default: one warm subprocess per operator, no container engine needed.

Each worker is ``python -m oremda_lab.worker`` in its own process group, run with
this interpreter, its output going to a log file in the session's ``run/`` folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from oremda_lab.runtime.base import Runtime, WorkerHandle
from oremda_lab.spec.operator import OperatorSpec

_TERM_GRACE = 2.0


class ProcessHandle(WorkerHandle):
    """A worker subprocess and its log file."""

    def __init__(self, process: subprocess.Popen, log: Path):
        self.process = process
        self.log = log

    def alive(self) -> bool:
        return self.process.poll() is None

    def exit_status(self) -> int | None:
        return self.process.poll()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(_TERM_GRACE)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


class LocalRuntime(Runtime):
    """Workers as local subprocesses of the kernel (or CLI) process."""

    name = "local"

    def launch(self, spec: OperatorSpec, worker_id: str) -> ProcessHandle:
        """Start ``python -m oremda_lab.worker`` for ``spec``."""
        if spec.path is None:
            raise ValueError(f"operator {spec.name} has no folder to run from")
        log = self.arena.path / "run" / f"{worker_id}.log"
        env = {**os.environ, **self.worker_env()}
        with open(log, "wb") as out:
            process = subprocess.Popen(
                self.worker_command(worker_id, spec.path),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.data_dir,
                start_new_session=True,  # a terminal's Ctrl-C goes to the engine, which stops workers
            )
        return ProcessHandle(process, log)
