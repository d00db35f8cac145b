"""The base root filesystem: Debian minbase + Python 3 + the operators' common packages.

No container registry is needed: ``debootstrap --variant=minbase`` fetches Debian from
its mirror, and ``pip install --target`` puts the Python packages (the versions
installed here, so local and container runs compute with the same code) into the
tree. The result is one tarball, cached under :func:`cache_dir` by a key over
everything that goes into it, ready for ``docker import`` / ``podman import``.

Air-gapped facilities can run the same steps against a local Debian mirror
(``OREMDA_DEBIAN_MIRROR``) and a wheel folder (``PIP_FIND_LINKS`` / ``PIP_NO_INDEX``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Debian packages beside python3 itself: certificates for http_reader, and tini as PID 1
# (the kernel drops signals a process in the container sends to PID 1, so a worker that
# is PID 1 could not even be killed by its own operator; tini also reaps and reports
# a signal death as 128+N).
APT_PACKAGES = ("python3", "ca-certificates", "tini")
# What every worker needs (the SDK's data plane), before the operators' own requirements.
CORE_REQUIREMENTS = ("numpy", "pyarrow")
USER_ID = 1001
# Left out of the image: documentation, locales and package caches (about 40 MB).
_PRUNE = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt", "var/lib/apt/lists")
# Left out of the Python packages: test suites, C headers and sources, and pyarrow's
# Flight and Gandiva libraries, which workers never load (lib.so links Substrait: kept).
_PRUNE_DIRS = ("tests", "include")
# (*.pyi stubs stay: scikit-image loads its submodules lazily from them.)
_PRUNE_GLOBS = ("*.pxd", "*.pyx", "pyarrow/src", "pyarrow/*flight*", "pyarrow/*gandiva*")


def cache_dir() -> Path:
    """Where built tarballs are kept: ``OREMDA_IMAGE_CACHE``, else ~/.cache/oremda-lab/images."""
    root = os.environ.get("OREMDA_IMAGE_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "oremda-lab" / "images"


def pinned(requirements: Iterable[str]) -> list[str]:
    """Pin bare package names to the versions installed here (others pass unchanged).

    Examples
    --------
    >>> pinned(["numpy", "numpy>=1"])[1]
    'numpy>=1'
    """
    out = []
    for req in requirements:
        if req.replace("-", "").replace("_", "").isalnum():
            try:
                out.append(f"{req}=={metadata.version(req)}")
                continue
            except metadata.PackageNotFoundError:
                pass
        out.append(req)
    return sorted(set(out))


def rootfs_key(requirements: Iterable[str], mirror: str = DEFAULT_MIRROR) -> str:
    """A short hash of everything that shapes the base tarball."""
    doc = {
        "suite": SUITE,
        "mirror": mirror,
        "apt": APT_PACKAGES,
        "pip": sorted(requirements),
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "uid": USER_ID,
        "layout": 5,  # bump when the build steps below change
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def build_rootfs(requirements: Iterable[str], *, mirror: str | None = None, log=print) -> Path:
    """Return the cached base tarball for ``requirements``, building it when missing.

    Needs root, ``debootstrap`` and this machine's Python minor version to match
    Debian's (3.11 for bookworm), since pip installs wheels for this interpreter.
    """
    mirror = mirror or os.environ.get("OREMDA_DEBIAN_MIRROR", DEFAULT_MIRROR)
    requirements = sorted(set(requirements))
    key = rootfs_key(requirements, mirror)
    target = cache_dir() / f"rootfs-{SUITE}-{key}.tar"
    if target.exists():
        log(f"base root filesystem: cached {target}")
        return target
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (apt-get install -y debootstrap)")
    if sys.version_info[:2] != (3, 11):
        raise RuntimeError(f"the {SUITE} base runs Python 3.11; build it with a Python 3.11 (this is {sys.version})")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="oremda-rootfs-", dir=target.parent) as work:
        root = Path(work) / "root"
        log(f"debootstrap {SUITE} (minbase + {', '.join(APT_PACKAGES)}) ...")
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(APT_PACKAGES)}", SUITE, str(root), mirror])
        site = root / "usr/local/lib/python3.11/dist-packages"  # on Debian's python3 path
        log(f"pip install into the image: {' '.join(requirements)}")
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run([*pip, "--no-warn-script-location", "--prefer-binary", "--target", str(site), *requirements])
        shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts point at this host's interpreter
        _prune_site(site)
        _add_user(root)
        for rel in _PRUNE:
            shutil.rmtree(root / rel, ignore_errors=True)
        partial = target.with_suffix(".partial")
        log(f"packing {target.name} ...")
        with tarfile.open(partial, "w") as tar:
            tar.add(root, arcname=".", filter=_skip_devices)
        partial.rename(target)
    for old in target.parent.glob(f"rootfs-{SUITE}-*.tar"):
        if old != target:  # one base at a time: each is several hundred MB
            old.unlink(missing_ok=True)
    return target


def _prune_site(site: Path) -> None:
    for folder in [p for p in site.rglob("*") if p.is_dir() and p.name in _PRUNE_DIRS]:
        # numpy's C headers are only for building extensions; "tests" packages are never imported by workers.
        shutil.rmtree(folder, ignore_errors=True)
    for pattern in _PRUNE_GLOBS:
        for path in site.glob(pattern if "/" in pattern else f"**/{pattern}"):
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _add_user(root: Path) -> None:
    """The non-root user the workers run as (uid/gid 1001, home /tmp)."""
    with open(root / "etc/passwd", "a") as f:
        f.write(f"oremda:x:{USER_ID}:{USER_ID}:oremda worker:/tmp:/usr/sbin/nologin\n")
    with open(root / "etc/group", "a") as f:
        f.write(f"oremda:x:{USER_ID}:\n")


def _skip_devices(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    # /dev and /proc are provided by the engine; device nodes would need privileges to import.
    if info.ischr() or info.isblk() or info.isfifo():
        return None
    return info


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed (exit {done.returncode}):\n{done.stdout[-4000:]}")
