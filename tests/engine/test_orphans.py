import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from oremda_lab import Engine
from oremda_lab.dataplane.arena import PREFIX
from oremda_lab.registry import Registry
from oremda_lab.testing import FAULT_OPERATORS, fault_pipeline

SCRIPT = """
import sys, time
from oremda_lab import Engine
from oremda_lab.registry import Registry
from oremda_lab.testing import FAULT_OPERATORS, fault_pipeline
engine = Engine("local", registry=Registry([FAULT_OPERATORS]))
run = engine.run(fault_pipeline({}, {}))
pids = [str(run.outputs[n]["out"].meta["pid"]) for n in ("n0", "n1")]
print(engine.arena.path, " ".join(pids), flush=True)
time.sleep(600)
"""


def test_a_killed_engine_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("OREMDA_SHM_DIR", str(tmp_path))
    engine_process = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    session, *pids = engine_process.stdout.readline().split()
    engine_process.stdout.close()
    assert os.path.isdir(session)
    engine_process.send_signal(signal.SIGKILL)
    engine_process.wait()
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)  # workers see their control socket close and exit
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)
    with Engine("inline"):  # the next start-up sweeps the dead session
        assert not os.path.exists(session)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(PREFIX)]


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its new parent to reap it counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def wait_until_gone(pids, seconds=30) -> list[int]:
    """Wait (bounded) for every pid to exit; returns those still alive."""
    deadline = time.monotonic() + seconds
    while not all(gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if not gone(p)]


def test_close_takes_the_operators_children_along(tmp_path):
    with Engine("local", tmp_path, registry=Registry([FAULT_OPERATORS])) as engine:
        meta = engine.run(fault_pipeline({"mode": "spawn"})).outputs["n0"]["out"].meta
        assert not gone(meta["child"])
    assert wait_until_gone([meta["pid"], meta["child"]]) == []


HUNG = """
import threading
from oremda_lab import Engine
from oremda_lab.registry import Registry
from oremda_lab.testing import FAULT_OPERATORS, fault_pipeline
engine = Engine("local", registry=Registry([FAULT_OPERATORS]))
meta = engine.run(fault_pipeline({"mode": "spawn"})).outputs["n0"]["out"].meta
running = threading.Event()
engine.subscribe(lambda e: running.set() if (e.node, e.state) == ("n0", "running") else None)
engine.submit(fault_pipeline({"mode": "hang"}))  # the same worker, now inside a task that never ends
running.wait(60)
print(meta["pid"], meta["child"], flush=True)
threading.Event().wait()
"""


def test_a_killed_engine_takes_hung_workers_and_their_children(tmp_path, monkeypatch):
    monkeypatch.setenv("OREMDA_SHM_DIR", str(tmp_path))
    engine_process = subprocess.Popen([sys.executable, "-c", HUNG], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in engine_process.stdout.readline().split()]
    engine_process.stdout.close()
    assert len(pids) == 2 and not any(gone(p) for p in pids)
    engine_process.send_signal(signal.SIGKILL)
    engine_process.wait()
    assert wait_until_gone(pids) == []
