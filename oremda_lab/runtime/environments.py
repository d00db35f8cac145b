"""Per-operator Python environments for the local runtime.

The rule
--------
An operator runs in the kernel's own Python, unchanged, when that environment already
satisfies it: it lists no ``requirements``, or every requirement (with its extras) is
installed at a version its specifier allows (:mod:`importlib.metadata` against
:mod:`packaging` specifiers), and its ``python`` (``"3.11"``, or a specifier such as
``">=3.10"``) matches the kernel's. Otherwise it gets its own virtual environment,
shared by every operator with the same resolved requirements:

1. :func:`lock` resolves the requirements plus the worker's core (numpy, pyarrow) into
   pinned lines with ``uv pip compile``, for the interpreter :func:`interpreter` picks
   (the kernel's unless the operator asks for another ``python``; then one uv finds on
   the machine, or installs). :attr:`Lock.key` hashes those lines and the interpreter.
   Resolutions are cached by the raw requirement set, so a known set needs no index
   (works offline).
2. :func:`ensure_environment` creates ``<cache>/envs/<key>`` on first use with
   ``uv venv`` and ``uv pip sync`` of the lock: built in a temporary folder and renamed
   into place (a file lock keeps two engines from building the same one), complete
   once its marker file exists. Later runs only check the marker: no network.
3. The worker half of this package (``spec``, ``dataplane``, ``worker``) is not
   installed into the environments: :func:`worker_path` writes it once to a
   content-addressed folder that workers get on ``PYTHONPATH``, so changing this
   package's code never invalidates an environment. The same files go into container
   images (:func:`worker_files`).

``<cache>`` is ``OREMDA_ENV_CACHE``, else ``$XDG_CACHE_HOME/oremda-lab`` (by default
``~/.cache/oremda-lab``). Each use of an environment stamps it (``.oremda-last-used``);
:func:`cached_environments` lists them with size and last use and
:func:`prune_environments` removes old or unneeded ones (``oremda-lab envs``).

Why uv: it resolves and installs an environment of numpy, pyarrow and a scientific
stack in seconds rather than minutes (pip), links files from one wheel cache shared by
all environments instead of copying them, can fetch a Python version the machine lacks,
and is the one resolver behind both these environments and the image layers, so an
operator gets the same pins in a venv and in an image.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from oremda_lab.spec.operator import OperatorSpec

CACHE_ENV = "OREMDA_ENV_CACHE"
#: What every worker imports, whatever the operator needs.
CORE_REQUIREMENTS = ("numpy", "pyarrow")
#: The worker's half of this package: it imports nothing else (checked by import-linter).
WORKER_SUBPACKAGES = ("spec", "dataplane", "worker")
MARKER = ".oremda-complete"
LAST_USED = ".oremda-last-used"
PACKAGE = Path(__file__).resolve().parent.parent  # oremda_lab/
# Outside the kernel the package's __init__ must not pull in the engine or Jupyter.
_INIT = '"""oremda-lab worker side (spec, dataplane, worker), as installed in operator images."""\n'

# Constraints packages enforce on import without declaring them (pyarrow lists numpy as
# optional, yet pyarrow 26 refuses numpy 1.x): when NAME's pin is in SPEC, also require ADD.
_UNDECLARED = (("numpy", "<2", "pyarrow<26"),)

Progress = Callable[[str], None]


class EnvironmentFailure(RuntimeError):
    """An operator's environment could not be resolved or created (the message says why)."""


@dataclass(frozen=True)
class Lock:
    """Pinned requirement lines (``name==version``) and the Python they were resolved for.

    ``python`` is the interpreter (a path: a venv made from it is bound to it) or the
    Python version they were resolved for (images), ``version`` its version.
    """

    lines: tuple[str, ...]
    python: str
    version: str

    @property
    def key(self) -> str:
        """Short hash of the lines and the interpreter: the environment's folder name."""
        return _hash([*self.lines, self.python, self.version])


@dataclass(frozen=True)
class Environment:
    """Where an operator's worker runs: the kernel's Python, or a cached venv."""

    kind: str  # "kernel" | "venv"
    python: str  # the interpreter to start
    key: str | None = None  # the lock key of a venv

    @property
    def id(self) -> str:
        """``"kernel"`` or ``"venv:<key>"`` (as recorded in provenance)."""
        return "kernel" if self.kind == "kernel" else f"{self.kind}:{self.key}"


KERNEL = Environment("kernel", sys.executable)


def cache_root() -> Path:
    """The folder holding ``envs/``, ``locks/`` and ``worker/``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "oremda-lab"


# -- the rule ----------------------------------------------------------------------


def kernel_satisfies(requirements: Iterable[str], python: str | None = None) -> bool:
    """Whether the kernel's environment already meets ``requirements`` and ``python``.

    Examples
    --------
    >>> kernel_satisfies([])
    True
    >>> kernel_satisfies(["numpy>=1"]), kernel_satisfies(["numpy==0.0.1"])
    (True, False)
    >>> kernel_satisfies([], python="2.7")
    False
    """
    if python and not python_matches(python, platform.python_version()):
        return False
    try:
        return all(_installed(Requirement(r), set()) for r in requirements)
    except InvalidRequirement:
        return False  # let the resolver name the problem


def python_matches(wanted: str, version: str) -> bool:
    """Whether Python ``version`` satisfies an operator's ``python`` (``"3.11"`` or a specifier).

    Examples
    --------
    >>> python_matches("3.11", "3.11.7"), python_matches(">=3.12", "3.11.7")
    (True, False)
    """
    if wanted[:1].isdigit():  # "3.11" means any 3.11.x
        return version == wanted or version.startswith(wanted + ".")
    return SpecifierSet(wanted).contains(version, prereleases=True)


def _installed(req: Requirement, seen: set[str]) -> bool:
    """``req`` (and what its extras pull in) is installed at an allowed version."""
    if req.url or (req.marker is not None and not req.marker.evaluate()):
        return not req.url  # a URL names one build: only a venv can be sure to have it
    try:
        dist = importlib.metadata.distribution(req.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    if not req.specifier.contains(dist.version, prereleases=True):
        return False
    for extra in sorted(req.extras):
        tag = f"{canonicalize_name(req.name)}[{extra}]"
        if tag in seen:
            continue
        seen.add(tag)
        for raw in dist.requires or ():
            dep = Requirement(raw)
            if dep.marker is not None and dep.marker.evaluate({"extra": extra}):
                dep.marker = None  # it applies: now only whether it is installed counts
                if not _installed(dep, seen):
                    return False
    return True


# -- resolving ---------------------------------------------------------------------


def lock(requirements: Iterable[str], python: str | None = None, progress: Progress | None = None) -> Lock:
    """Resolve ``requirements`` plus the worker core into pinned lines (``uv pip compile``).

    ``python`` is the interpreter to resolve for (a path, default the kernel's; see
    :func:`interpreter`) or a Python version (``"3.11"``, e.g. an image's). The result is
    cached by the raw requirement set and the Python, so a set resolved once resolves
    again without an index. Raises :class:`EnvironmentFailure` with uv's message.
    """
    requirements = tuple(requirements)
    target = python or sys.executable
    version = _version_of(target) if os.sep in target else target
    wanted = sorted(set(requirements) | set(CORE_REQUIREMENTS))
    path = _lock_file(wanted, target, version)
    cached = _cached_lock(path, target, version)
    if cached is not None:
        return cached
    if progress is not None:
        progress(f"resolving {', '.join(requirements)} ...")
    lines = _compile(requirements, wanted, version)
    pins = dict(line.split("==", 1) for line in lines if "==" in line)
    extra = [
        add
        for name, when, add in _UNDECLARED
        if name in pins and SpecifierSet(when).contains(pins[name], True) and not _pinned_within(pins, add)
    ]
    if extra:
        lines = _compile(requirements, [*wanted, *extra], version)
    record = {"requirements": wanted, "python": target, "version": version, "lines": list(lines)}
    _write_atomic(path, json.dumps(record, indent=1))
    return Lock(lines, target, version)


def _lock_file(wanted: list[str], target: str, version: str) -> Path:
    return cache_root() / "locks" / f"{_hash([*wanted, target, version])}.json"


def _cached_lock(path: Path, target: str, version: str) -> Lock | None:
    try:
        return Lock(tuple(json.loads(path.read_text())["lines"]), target, version)
    except (OSError, ValueError, KeyError):
        return None


def interpreter(python: str | None = None, progress: Progress | None = None) -> tuple[str, str]:
    """The interpreter (path, version) an environment for ``python`` is made from.

    ``python`` is a version (``"3.10"``: any 3.10.x) or a specifier (``">=3.10"``). The
    kernel's interpreter when it matches or none is asked for; else one uv finds on this
    machine; else one uv installs (a download, reported to ``progress``).
    """
    if not python or python_matches(python, platform.python_version()):
        return sys.executable, platform.python_version()
    found = run_uv("python", "find", "--system", python)
    if found.returncode != 0:
        if progress is not None:
            progress(f"installing Python {python} ...")
        installed = run_uv("python", "install", python)
        found = run_uv("python", "find", "--system", python)
        if found.returncode != 0:
            raise EnvironmentFailure(f"python {python!r} is not available: {_last_line(installed.stderr)}")
    path = found.stdout.strip()
    return path, _version_of(path)


@functools.cache
def _version_of(python: str) -> str:
    if python == sys.executable:
        return platform.python_version()
    asked = [python, "-c", "import platform; print(platform.python_version())"]
    return subprocess.run(asked, capture_output=True, text=True, check=True).stdout.strip()


def _pinned_within(pins: dict[str, str], requirement: str) -> bool:
    req = Requirement(requirement)
    return req.name in pins and req.specifier.contains(pins[req.name], True)


def _compile(requirements: Iterable[str], wanted: list[str], version: str) -> tuple[str, ...]:
    done = run_uv(
        "pip", "compile", "-", "--no-header", "--no-annotate", "--quiet", "--python-version", version,
        input="\n".join(wanted) + "\n",
    )  # fmt: skip
    if done.returncode != 0:
        raise EnvironmentFailure(_explain(requirements, done.stderr))
    return tuple(line.strip() for line in done.stdout.splitlines() if line.strip() and not line.startswith("#"))


def _explain(requirements: Iterable[str], stderr: str) -> str:
    """Which requirement uv's error names, and uv's key line."""
    # uv draws a tree on a terminal (×, ╰─▶) and prefixes "cause:" otherwise.
    lines = [re.sub(r"^[\s×╰─▶│|]*(cause:)?", "", line).strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line]
    names = {}
    for raw in requirements:
        try:
            names[raw] = canonicalize_name(Requirement(raw).name)
        except InvalidRequirement:
            names[raw] = raw
    for raw, name in names.items():
        pattern = re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", re.IGNORECASE)
        for line in lines:
            if pattern.search(line.replace("_", "-")) or raw in line:
                return f"requirement {raw!r} cannot be installed: {line}"
    key = next((line for line in lines if "because" in line.lower() or "error" in line.lower()), None)
    return f"the requirements cannot be installed: {key or (lines[-1] if lines else 'uv failed')}"


# -- creating ----------------------------------------------------------------------


def ensure_environment(spec: OperatorSpec, progress: Progress | None = None) -> Environment:
    """The environment ``spec`` runs in, creating (and caching) a venv if it needs one.

    ``progress(message)`` hears what takes time (resolving, creating, installed in).
    Raises :class:`EnvironmentFailure` naming the operator and the requirement that failed.
    """
    say = progress or (lambda message: None)
    if kernel_satisfies(spec.requirements, spec.python):
        return KERNEL
    try:
        return _ensure_venv(spec, say)
    except EnvironmentFailure as e:
        raise EnvironmentFailure(f"could not create the environment of {spec.name}: {e}") from None


def _ensure_venv(spec: OperatorSpec, say: Progress) -> Environment:
    resolved = lock(spec.requirements, interpreter(spec.python, say)[0], say)
    folder = cache_root() / "envs" / resolved.key
    env = Environment("venv", str(folder / "bin" / "python"), resolved.key)
    if _complete(folder):
        _stamp(folder)
        return env
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(folder.with_name(f"{resolved.key}.lock")):
        if not _complete(folder):  # else another engine built it while we waited
            say(f"creating environment for {spec.name} ({len(resolved.lines)} packages) ...")
            started = time.monotonic()
            _build(folder, resolved)
            say(f"installed in {time.monotonic() - started:.1f} s")
        _stamp(folder)
    return env


def _stamp(folder: Path) -> None:
    """Record a use of the environment in ``folder`` (what pruning goes by)."""
    with contextlib.suppress(OSError):  # a read-only shared cache: it simply is not pruned by age
        (folder / LAST_USED).touch()


def _complete(folder: Path) -> bool:
    """Built whole (marker), and its interpreter still resolves (a venv links to its base Python)."""
    return (folder / MARKER).exists() and (folder / "bin" / "python").exists()


def _build(folder: Path, resolved: Lock) -> None:
    """Create the venv in a temporary folder beside ``folder``, then rename it into place."""
    if folder.exists():  # incomplete, or its base Python is gone: made again
        shutil.rmtree(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        # --relocatable: the scripts in bin/ keep working after the rename.
        made = run_uv("venv", "--quiet", "--relocatable", "--python", resolved.python, str(tmp / "env"))
        if made.returncode != 0:
            raise EnvironmentFailure(f"python {resolved.python!r} is not available: {_last_line(made.stderr)}")
        requirements = tmp / "requirements.txt"
        requirements.write_text("\n".join(resolved.lines) + "\n")
        installed = run_uv("pip", "sync", "--quiet", "--python", str(tmp / "env" / "bin" / "python"), str(requirements))
        if installed.returncode != 0:
            raise EnvironmentFailure(_explain(resolved.lines, installed.stderr))
        (tmp / "env" / MARKER).write_text("\n".join(resolved.lines) + "\n")
        os.rename(tmp / "env", folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _file_lock(path: Path):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocks: another engine may be building this one
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- the cache: listing and pruning ---------------------------------------------------


@dataclass(frozen=True)
class CachedEnvironment:
    """One venv in the cache, as ``oremda-lab envs`` lists it."""

    key: str
    path: Path
    size: int  # bytes on disk, each file counted once
    own: int  # of those, bytes no other folder links to (uv links files from its cache): what removal frees
    last_used: float  # seconds since the epoch (its creation if never stamped)
    python: str  # its Python version ("" if unknown)
    packages: int  # pinned packages in its lock
    complete: bool  # False: a build that failed or was interrupted


def cached_environments() -> list[CachedEnvironment]:
    """The venvs in the cache (complete or not), oldest use first."""
    folder = cache_root() / "envs"
    found = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.is_dir():
            continue  # a build lock
        marker, stamp = path / MARKER, path / LAST_USED
        used = next(p.stat().st_mtime for p in (stamp, marker, path) if p.exists())
        try:
            config = (path / "pyvenv.cfg").read_text()
            python = re.search(r"^version(?:_info)?\s*=\s*(\S+)", config, re.MULTILINE).group(1)
        except (OSError, AttributeError):
            python = ""
        lines = marker.read_text().split() if marker.exists() else []
        key = path.name.lstrip(".").split("-", 1)[0]  # a temporary build folder is ".KEY-random"
        found.append(CachedEnvironment(key, path, *_disk_usage(path), used, python, len(lines), _complete(path)))
    return sorted(found, key=lambda e: e.last_used)


def environment_key(spec: OperatorSpec) -> str | None:
    """The venv ``spec`` would run in, from the cache only (no resolving, no download).

    ``"kernel"`` when the kernel satisfies it, a venv key when its requirements were
    resolved here before, else None (it has no environment yet).
    """
    if kernel_satisfies(spec.requirements, spec.python):
        return "kernel"
    target = sys.executable
    if spec.python and not python_matches(spec.python, platform.python_version()):
        found = run_uv("python", "find", "--system", spec.python)
        if found.returncode != 0:
            return None
        target = found.stdout.strip()
    version = _version_of(target)
    wanted = sorted(set(spec.requirements) | set(CORE_REQUIREMENTS))
    cached = _cached_lock(_lock_file(wanted, target, version), target, version)
    return cached.key if cached is not None else None


def prune_environments(
    older_than: float | None = None, needed: Collection[str] | None = None, dry_run: bool = False
) -> list[CachedEnvironment]:
    """Remove venvs last used more than ``older_than`` seconds ago, or not in ``needed`` (keys).

    Incomplete ones (a failed or interrupted build) always go. An environment being built
    (its build lock held) is left alone. Returns what was (or, ``dry_run``, would be) removed.
    """
    now, removed = time.time(), []
    for env in cached_environments():
        old = older_than is not None and now - env.last_used > older_than
        unneeded = needed is not None and env.key not in needed
        if not (old or unneeded or not env.complete):
            continue
        lock_file = env.path.parent / f"{env.key}.lock"
        with open(lock_file, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # an engine is building it right now
            if not dry_run:
                shutil.rmtree(env.path, ignore_errors=True)
        removed.append(env)
    return removed


def _disk_usage(folder: Path) -> tuple[int, int]:
    """Bytes ``folder`` takes on disk (each inode once), and those of its files linked nowhere else."""
    seen, total, own = set(), 0, 0
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
                own += st.st_blocks * 512 if st.st_nlink == 1 or name in dirs else 0
    return total, own


# -- the worker half -----------------------------------------------------------------


def worker_files() -> dict[str, bytes]:
    """The worker sub-packages' sources and data, relative to ``oremda_lab/``."""
    files = {"__init__.py": _INIT.encode(), "_version.py": (PACKAGE / "_version.py").read_bytes()}
    for sub in WORKER_SUBPACKAGES:
        for path in sorted((PACKAGE / sub).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
                files[str(path.relative_to(PACKAGE))] = path.read_bytes()
    return files


def worker_path() -> Path:
    """A folder holding ``oremda_lab/`` (worker half only), for a venv's ``PYTHONPATH``.

    Content-addressed: written once per version of the files, never changed after.
    """
    files = worker_files()
    key = _hash(f"{name}:{hashlib.sha256(data).hexdigest()}" for name, data in sorted(files.items()))
    folder = cache_root() / "worker" / key
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder.parent))
    try:
        for name, data in files.items():
            target = tmp / "oremda_lab" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process wrote the same content first
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


# -- helpers -----------------------------------------------------------------------


def run_uv(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """Run ``uv ARGS`` (the uv of the ``uv`` package, else the one on PATH); output captured."""
    try:
        from uv import find_uv_bin

        uv = find_uv_bin()
    except (ImportError, FileNotFoundError):
        uv = shutil.which("uv")
    if uv is None:
        raise EnvironmentFailure("uv is not installed (pip install uv)")
    return subprocess.run([uv, *args], input=input, capture_output=True, text=True, check=False)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "uv failed"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _hash(parts: Iterable[str]) -> str:
    return hashlib.sha256(json.dumps(list(parts)).encode()).hexdigest()[:16]
