"""The embedded default: one warm process per worker, no container engine needed.

Workers are forked from a fork server that has already imported numpy, pyarrow,
scipy and the worker loop, so starting N workers costs little more than one (a
fresh interpreter spends about half a second on imports alone). Each worker runs in
its own session (process group), its output going to a log file in the session's
``run/`` folder.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

from oremda_lab.runtime.base import Runtime, WorkerHandle
from oremda_lab.spec.operator import OperatorSpec

_TERM_GRACE = 2.0
# Imported once in the fork server; every worker starts with them loaded.
PRELOAD = ["oremda_lab.worker.main", "numpy", "pyarrow", "scipy.ndimage", "scipy.optimize", "skimage.feature"]


class ProcessHandle(WorkerHandle):
    """A forked worker process and its log file."""

    def __init__(self, process: multiprocessing.process.BaseProcess, log: Path):
        self.process = process
        self.log = log
        self._exitcode: int | None = None
        self._closed = False

    def alive(self) -> bool:
        return not self._closed and self.process.is_alive()

    def exit_status(self) -> int | None:
        return self._exitcode if self._closed else self.process.exitcode

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        if self._closed:
            return
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(_TERM_GRACE)
            if self.process.is_alive():
                self.process.kill()
        self.process.join()
        self._exitcode = self.process.exitcode
        self._closed = True
        self.process.close()  # release its sentinel pipe now, not at garbage collection


class LocalRuntime(Runtime):
    """Workers as local processes of the kernel (or CLI) process."""

    name = "local"

    def launch(self, spec: OperatorSpec, worker_id: str) -> ProcessHandle:
        """Fork a worker for ``spec`` from the fork server."""
        if spec.path is None:
            raise ValueError(f"operator {spec.name} has no folder to run from")
        log = self.arena.path / "run" / f"{worker_id}.log"
        process = _context().Process(
            target=_worker_main,
            args=(self.worker_args(worker_id, spec.path), self.worker_env(), str(log), str(self.data_dir)),
            name=f"oremda-{worker_id}",
            daemon=False,
        )
        process.start()
        return ProcessHandle(process, log)


def _context() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _worker_main(args: list[str], env: dict[str, str], log: str, cwd: str) -> None:
    """Runs in the forked child: own session, output to the log, then the worker loop."""
    os.setsid()  # a terminal's Ctrl-C goes to the engine, which stops its workers
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.update(env)
    os.chdir(cwd)
    from oremda_lab.worker.main import main

    main(args)
    sys.stdout.flush()
