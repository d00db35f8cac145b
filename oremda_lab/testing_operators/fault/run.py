import ctypes
import os
import signal
import sys
import time

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator


@operator
def fault(inputs, params):
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
    value = inputs.get("in")
    data = value.data + 1 if value is not None and value.data is not None else np.ones(params["size"])
    return {"out": PortValue(data, {"pid": os.getpid(), "tag": params["tag"]})}
