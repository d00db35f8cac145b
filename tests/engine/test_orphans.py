import os
import signal
import subprocess
import sys
import time

from oremda_lab import Engine
from oremda_lab.dataplane.arena import PREFIX

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
