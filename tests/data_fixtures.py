"""Real EM test data: the package's example data, plus peer libraries for references.

The files come from :mod:`oremda_lab.examples` (fetched from PyPI wheels once, cached,
never committed). ``peer_python()`` is a virtualenv (system site-packages + exspy and
hyperspy) used only to compute reference results in a subprocess, so GPL peers never
enter the test environment itself.
"""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

from oremda_lab.examples import (  # noqa: F401  (re-exported for the fixtures)
    DataUnavailable,
    au_emd,
    cache_dir,
    coreloss_msa,
    example_data,
    fetch,
    file_lock,
    lowloss_msa,
    mos2_dm3,
)

data_folder = example_data


def peer_python(packages: tuple[str, ...] = ("exspy==0.3.2",)) -> Path:
    """A Python with the peer libraries, for reference results computed in a subprocess.

    A virtualenv on top of the system site-packages keeps the test environment itself
    free of GPL peers (hyperspy, exspy). Raises :class:`DataUnavailable` when pip fails.
    """
    env = cache_dir() / "peers-venv"
    python = env / "bin" / "python"
    marker = env / ("ok-" + "-".join(p.replace("=", "") for p in packages))
    if marker.is_file():
        return python
    with file_lock("peers-venv"):
        if not marker.is_file():
            if not python.is_file():
                venv.create(env, system_site_packages=True, with_pip=True)
            cmd = [str(python), "-m", "pip", "install", "-q", *packages]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise DataUnavailable(f"could not install {packages}: {done.stderr.strip()[-500:]}")
            marker.write_text("ok\n")
    return python
