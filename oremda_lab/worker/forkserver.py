"""A fork server for local workers: imports the heavy libraries once, forks workers.

A fresh interpreter spends about half a second importing numpy, pyarrow and scipy;
forking from a process that already holds them starts a worker in milliseconds, so
a pipeline's workers start together instead of queueing for the two cores.

Protocol (one JSON object per line): the runtime writes
``{"args": [...], "env": {...}, "log": PATH, "cwd": PATH}`` on stdin; the server answers
``{"pid": N}``. When a worker exits, the server writes its wait status to ``LOG.status``
(so a reused pid can never pass for a live worker). End of stdin stops the server.

Workers die with their engine and take all their descendants along: each worker leads
its own process group, which the server kills (SIGKILL) as soon as the worker exits,
and kills for every live worker when its stdin ends (the engine stopped, or was killed:
the pipe closes either way). Processes that left the group (``setsid``, a daemon's
double fork) are caught too: the server and every worker are child subreapers
(``PR_SET_CHILD_SUBREAPER``, Linux), so an orphan is adopted by its worker, or by the
server once the worker is gone, never by init; the server kills every process below it
that is not a live worker's, whenever a worker exits and when it stops. A worker also
gets SIGKILL if the server itself dies (``PR_SET_PDEATHSIG``).

Unlike :mod:`multiprocessing`'s fork server, the parent's ``__main__`` (a notebook
kernel or the CLI) is not imported again in every worker.

It lives in the worker half because the local runtime starts one per environment: with
the kernel's Python, and with each operator environment's (see
:mod:`oremda_lab.runtime.environments`), where only the worker half is importable and
the preloaded libraries may be missing or old.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Collection
from importlib import import_module
from pathlib import Path

from oremda_lab.dataplane.arena import owner_record, signal_group
from oremda_lab.worker.main import environment_report

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PR_SET_CHILD_SUBREAPER = 36
PRELOAD = ("numpy", "pyarrow", "scipy.ndimage", "scipy.optimize", "skimage.feature")


def _reap(logs: dict[int, tuple[str, dict]]) -> None:
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})  # no nested call while killing
    try:
        worker_left = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            worker = logs.pop(pid, None)
            if worker is not None:  # written whole, then renamed: readers never see it half done
                log, leader = worker
                signal_group(leader, signal.SIGKILL)  # what the operator started dies with its worker
                with open(log + ".status.part", "w") as out:
                    out.write(str(os.waitstatus_to_exitcode(status)))
                os.rename(log + ".status.part", log + ".status")
                worker_left = True
        if worker_left:  # its orphans are ours now: they go with it
            kill_descendants(os.getpid(), spare=set(logs))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _prctl(option: int, value: int) -> bool:
    """``prctl(option, value)``; False where there is none (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGKILL when the fork server goes (Linux; elsewhere a no-op)."""
    if _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) and os.getppid() != parent:
        os._exit(1)  # the server died before the request took effect


def adopt_orphans() -> bool:
    """Make this process a child subreaper: orphans below it are adopted by it, not by init (Linux)."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def _children() -> dict[int, list[int]]:
    """Parent pid -> pids of its living (not zombie) children, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != "Z":
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def kill_descendants(root: int, spare: Collection[int] = (), within: float = 10.0) -> None:
    """SIGKILL every process below ``root`` except the subtrees of ``spare`` (live workers).

    ``root`` must be a child subreaper (:func:`adopt_orphans`): a killed process's
    children are then adopted by it and found by the next pass; passes repeat until none is left (or ``within`` s).
    """
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        tree, found, todo = _children(), [], [root]
        while todo:
            for pid in tree.get(todo.pop(), []):
                if pid not in spare:
                    found.append(pid)
                    todo.append(pid)
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)  # SIGKILL is asynchronous: let them die, and orphans move up to root


def _child(request: dict, parent: int) -> None:
    os.setsid()  # a terminal's Ctrl-C goes to the engine, which stops its workers
    _die_with_parent(parent)
    adopt_orphans()  # the operator's orphans stay below this worker
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    from oremda_lab.worker.main import main

    main(request["args"])


def serve() -> None:
    """Answer fork requests until stdin closes."""
    for name in PRELOAD:
        try:
            import_module(name)
        except Exception:  # missing, or broken against this numpy: workers that need it will say so
            pass
    environment_report()  # computed once here, inherited by every worker's HELLO
    adopt_orphans()  # a dead worker's orphans come here, not to init
    logs: dict[int, tuple[str, dict]] = {}  # worker pid -> its log, and its owner record (a group leader)
    signal.signal(signal.SIGCHLD, lambda *_: _reap(logs))
    replies = sys.stdout.buffer
    parent = os.getpid()
    for line in sys.stdin.buffer:
        request = json.loads(line)
        # Hold SIGCHLD until the pid is recorded: a worker may die before fork() returns.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        pid = os.fork()
        if pid == 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            code = 0
            try:
                _child(request, parent)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        logs[pid] = (request["log"], owner_record(pid))  # read while the pid is surely the worker's
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        replies.write(json.dumps({"pid": pid}).encode() + b"\n")
        replies.flush()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    for _, leader in list(logs.values()):  # the engine is gone: so are its workers and their children
        signal_group(leader, signal.SIGKILL)
    kill_descendants(os.getpid())  # and whatever left their groups


if __name__ == "__main__":
    serve()
