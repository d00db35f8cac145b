"""data_container: the bytes of a file shipped inside the operator folder."""

import hashlib
from pathlib import Path

from oremda_lab.worker.sdk import PortValue, operator

DATA = Path(__file__).resolve().parent / "data"


@operator
def data_container(inputs, params):
    name = params.get("filename") or "lattice.tif"
    path = (DATA / name).resolve()
    if path.parent != DATA or not path.is_file():
        known = sorted(p.name for p in DATA.iterdir() if p.suffix != ".py")
        raise FileNotFoundError(f"data_container has no file {name!r}; it ships {known}")
    body = path.read_bytes()
    return {"data": PortValue(body, {"filename": name, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()})}
