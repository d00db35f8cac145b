"""In-process runtime for fast tests.

Workers are threads, but every message goes through the real socket and codecs and
every array through shared memory.
"""

from __future__ import annotations

import threading
from multiprocessing.connection import Client

from oremda_lab.runtime.base import Runtime, WorkerHandle
from oremda_lab.spec.operator import OperatorSpec
from oremda_lab.worker.main import Worker, load_operator, serve


class ThreadHandle(WorkerHandle):
    """A worker loop in a thread of this process."""

    def __init__(self, thread: threading.Thread, conn):
        self.thread = thread
        self.conn = conn

    def alive(self) -> bool:
        return self.thread.is_alive()

    def exit_status(self) -> int | None:
        return None if self.thread.is_alive() else 0

    def kill(self) -> None:
        self.conn.close()  # the loop ends at its next receive
        self.thread.join(timeout=5)


class InlineRuntime(Runtime):
    """Workers as threads of the calling process (no isolation; for tests and debugging)."""

    name = "inline"

    def launch(self, spec: OperatorSpec, worker_id: str) -> ThreadHandle:
        """Load the operator here and serve it from a thread."""
        _, func = load_operator(spec.path)
        conn = Client(self.address, family="AF_UNIX", authkey=self.authkey)
        worker = Worker(spec, func, self.arena, data_dir=str(self.data_dir))
        thread = threading.Thread(target=serve, args=(conn, worker, worker_id), name=f"oremda-{worker_id}", daemon=True)
        thread.start()
        return ThreadHandle(thread, conn)
