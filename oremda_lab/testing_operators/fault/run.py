import ctypes
import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np

from oremda_lab.worker.sdk import PortValue, data_path, operator, output_array


@operator
def fault(inputs, params):
    entered = time.monotonic()  # the host's clock, in containers too: tells whether two tasks overlapped
    mode = params["mode"]
    print(f"fault operator: mode={mode}", flush=True)  # shows up in the log tail
    if mode == "raise":
        raise ValueError("asked to raise")
    if mode == "exit":
        sys.exit(3)
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "segfault":
        ctypes.string_at(0)
    if mode == "hang":
        time.sleep(3600)
    if mode == "sleep":
        time.sleep(params["seconds"])
    if mode == "wait":
        deadline = time.monotonic() + params["seconds"]
        while not gate_open(params["gate"]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{params['gate']} did not appear within {params['seconds']} s")
            time.sleep(0.005)
    if mode == "oom":
        blow_up_memory()
    if mode == "alloc-raise":
        output_array(params["size"])[:] = 1  # shared memory taken, then lost to the failure
        raise ValueError("asked to raise after allocating")
    value = inputs.get("in")
    if mode == "write-input":
        value.data.flags.writeable = True  # must raise: inputs are read-only mappings
        value.data[...] = -1
    data = value.data + 1 if value is not None and value.data is not None else np.ones(params["size"])
    if mode == "read":  # the data file's bytes (a special file must be refused, never read)
        data = np.frombuffer(data_path(params["file"]).read_bytes(), np.uint8)
    meta = {"pid": os.getpid(), "tag": params["tag"], "entered": entered, "left": time.monotonic()}
    if mode == "spawn":  # an operator's helper process, which must not outlive its worker
        # It says when it runs: Popen returns before the kernel shows the child's environment.
        code = "import time; print('up', flush=True); time.sleep(3600)"
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        child.stdout.readline()
        child.stdout.close()
        meta["child"] = child.pid
    if mode == "daemon":  # a helper that leaves the worker's process group and session (setsid, double fork)
        code = (
            "import os, time\nos.setsid()\nif os.fork():\n    os._exit(0)\n"
            "print(os.getpid(), flush=True)\ntime.sleep(3600)"
        )
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        meta["child"] = int(child.stdout.readline())  # the grandchild, an orphan now: its parent left
        child.stdout.close()
        child.wait()
    if mode == "bad-meta":
        meta["handle"] = object()
    if mode == "bad-output":
        return [data]  # a list where a dict of outputs belongs
    return {"out": PortValue(data, meta)}


def blow_up_memory():
    """Allocate and touch far more than the address space this process may grow by.

    The limit is set on this process only (soft RLIMIT_AS: 256 MiB above what it maps
    now) and put back after, so the worker stays usable; the machine is never at risk.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (mapped + (256 << 20), hard))
    try:
        np.ones(64 << 30, np.uint8)  # 64 GiB, written (np.ones touches every page)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def gate_open(name):
    try:
        return data_path(name) is not None
    except FileNotFoundError:
        return False
