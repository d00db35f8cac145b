"""The filesystems that go into images: the Debian base, and site-packages folders.

No container registry is needed. :func:`build_rootfs` runs ``debootstrap
--variant=minbase`` (Debian from its mirror) plus ``python3``, ``tini`` and
certificates, with no Python packages, into one tarball cached under
:func:`cache_dir` for ``docker import`` / ``podman import``. :func:`install_site`
installs pinned requirement lines (an operator's resolved lock) into a relocatable
``site-packages`` folder on the host with ``uv pip install --target`` for the base's
Python and platform, which the builder then ``COPY``s onto the base.

Air-gapped facilities can run the same steps against a local Debian mirror
(``OREMDA_DEBIAN_MIRROR``) and a wheel folder (``UV_FIND_LINKS`` / ``UV_NO_INDEX``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# The Python of the base: Debian bookworm's python3. Packages are installed for it.
PYTHON_VERSION = "3.11"
# Where the base's python3 finds installed packages without PYTHONPATH (so .pth files work).
SITE_DIR = f"/usr/local/lib/python{PYTHON_VERSION}/dist-packages"
# The oldest glibc-tagged wheels bookworm (glibc 2.36) runs.
GLIBC = "2_36"
# Debian packages beside python3 itself: certificates for http_reader, and tini as PID 1
# (the kernel drops signals a process in the container sends to PID 1, so a worker that
# is PID 1 could not even be killed by its own operator; tini also reaps and reports
# a signal death as 128+N).
APT_PACKAGES = ("python3", "ca-certificates", "tini")
USER_ID = 1001
# Left out of the image: documentation, locales and package caches (about 40 MB).
_PRUNE = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt", "var/lib/apt/lists")
# Left out of the Python packages: C headers and sources, and pyarrow's Flight and
# Gandiva libraries, which workers never load (lib.so links Substrait: kept). Test
# packages stay: numpy 2.0-2.2's numpy.testing imports numpy._core.tests._natype.
# (*.pyi stubs stay too: scikit-image loads its submodules lazily from them.)
_PRUNE_DIRS = ("include",)
# What install_site keeps and drops; part of every saved layer's name, so a change rebuilds them.
SITE_LAYOUT = "2"
_PRUNE_GLOBS = ("*.pxd", "*.pyx", "pyarrow/src", "pyarrow/*flight*", "pyarrow/*gandiva*")


def cache_dir() -> Path:
    """Where built tarballs are kept: ``OREMDA_IMAGE_CACHE``, else ~/.cache/oremda-lab/images."""
    root = os.environ.get("OREMDA_IMAGE_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "oremda-lab" / "images"


def rootfs_key(mirror: str = DEFAULT_MIRROR) -> str:
    """A short hash of everything that shapes the base tarball.

    Examples
    --------
    >>> rootfs_key() == rootfs_key(DEFAULT_MIRROR) != rootfs_key("http://mirror.example/debian")
    True
    """
    doc = {"suite": SUITE, "mirror": mirror, "apt": APT_PACKAGES, "uid": USER_ID, "layout": 6}  # bump on recipe changes
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def build_rootfs(*, mirror: str | None = None, log=print) -> Path:
    """Return the cached base tarball (Debian minbase, python3, tini), building it when missing.

    Needs root and ``debootstrap``.
    """
    mirror = mirror or os.environ.get("OREMDA_DEBIAN_MIRROR", DEFAULT_MIRROR)
    target = cache_dir() / f"rootfs-{SUITE}-{rootfs_key(mirror)}.tar"
    if target.exists():
        log(f"base root filesystem: cached {target}")
        return target
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (apt-get install -y debootstrap)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="oremda-rootfs-", dir=target.parent) as work:
        root = Path(work) / "root"
        log(f"debootstrap {SUITE} (minbase + {', '.join(APT_PACKAGES)}) ...")
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(APT_PACKAGES)}", SUITE, str(root), mirror])
        _add_user(root)
        for rel in _PRUNE:
            shutil.rmtree(root / rel, ignore_errors=True)
        partial = target.with_suffix(".partial")
        log(f"packing {target.name} ...")
        with tarfile.open(partial, "w") as tar:
            tar.add(root, arcname=".", filter=_skip_devices)
        partial.rename(target)
    for old in target.parent.glob(f"rootfs-{SUITE}-*.tar"):
        if old != target:  # one base at a time
            old.unlink(missing_ok=True)
    return target


def platform_tag() -> str:
    """The ``uv --python-platform`` of the base on this machine's architecture.

    Examples
    --------
    >>> platform_tag().endswith("-manylinux_2_36")
    True
    """
    return f"{platform.machine()}-manylinux_{GLIBC}"


def install_site(lines: Iterable[str], target: Path) -> Path:
    """Install pinned requirement ``lines`` into the folder ``target`` for the base's Python.

    ``lines`` is a complete resolution (a lock), so nothing else is resolved
    (``--no-deps``). Console scripts (they name this host's interpreter) and headers are
    dropped. With a Python 3.11 on the host, modules are precompiled as
    *unchecked-hash* ``.pyc`` files, valid whatever the files' times in the image, so
    workers need not compile numpy on every start of a read-only container.
    """
    from oremda_lab.runtime.environments import run_uv

    target.mkdir(parents=True, exist_ok=True)
    requirements = target.parent / f"{target.name}.txt"
    requirements.write_text("\n".join(lines) + "\n")
    done = run_uv(
        "pip", "install", "--quiet", "--no-deps", "--target", str(target), "--python-version", PYTHON_VERSION,
        "--python-platform", platform_tag(), "-r", str(requirements),
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"installing {' '.join(lines)} for the image failed:\n{done.stderr[-4000:]}")
    shutil.rmtree(target / "bin", ignore_errors=True)
    _prune_site(target)
    if sys.version_info[:2] == tuple(int(v) for v in PYTHON_VERSION.split(".")):
        # Not checked: a package may ship a file that is not valid Python 3.11 (a template,
        # a file for another version); it is simply left uncompiled, as pip does.
        compileall = [sys.executable, "-m", "compileall", "-q", "-j0", "--invalidation-mode", "unchecked-hash"]
        subprocess.run([*compileall, str(target)], capture_output=True, check=False)
    return target


def _prune_site(site: Path) -> None:
    for folder in [p for p in site.rglob("*") if p.is_dir() and p.name in _PRUNE_DIRS]:
        # C headers are only for building extensions.
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
