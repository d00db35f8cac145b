"""The wheel carries what an installed (non-editable) package needs: the example pipelines, and the
config file that enables the Jupyter server extension."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_the_example_pipelines_and_the_editor_finds_them(tmp_path):
    # pip builds the wheel the way a user's `pip install oremda-lab` does (isolated build).
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
                   check=True, cwd=ROOT, timeout=600)  # fmt: skip
    (whl,) = tmp_path.glob("oremda_lab-*.whl")
    source = {p.name: p.read_bytes() for p in (ROOT / "pipelines").glob("*.json")}
    assert "lattice_analysis.json" in source
    with zipfile.ZipFile(whl) as z:
        shipped = {Path(n).name: z.read(n) for n in z.namelist() if n.startswith("oremda_lab/pipelines/")}
        config = [n for n in z.namelist() if n.endswith("/data/etc/jupyter/jupyter_server_config.d/oremda_lab.json")]
        assert len(config) == 1, "the server extension's config is not in the wheel"
        assert json.loads(z.read(config[0]))["ServerApp"]["jpserver_extensions"] == {"oremda_lab": True}
        z.extractall(tmp_path / "site")
    assert shipped == source
    # Installed layout: the Examples menu lists the wheel's copies, not the checkout's.
    code = (
        "import oremda_lab.examples as x; "
        "print(x.__file__); print(sorted((n, str(p)) for n, p in x.example_pipelines().items()))"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         check=True, timeout=120).stdout.splitlines()  # fmt: skip
    site = tmp_path / "site" / "oremda_lab"
    assert out[0] == str(site / "examples.py")
    expected = sorted((Path(n).stem, str(site / "pipelines" / n)) for n in source)
    assert out[1] == repr(expected)
