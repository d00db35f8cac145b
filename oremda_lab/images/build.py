"""``oremda-lab build [NAMES]``: one image per operator, each with its own environment.

Five layers, each rebuilt only when its inputs change, so operators with the same
requirements share every layer but their own last one:

1. ``oremda-lab/base:<key>``: the root filesystem from :mod:`.rootfs` (Debian minbase,
   python3, tini, certificates; no Python packages), brought in with the engine's
   *import*;
2. ``oremda-lab/core:<key>``: the locked numpy and pyarrow (the worker's core) in
   Python's ``dist-packages``; shared by every requirement set that pins the same two;
3. ``oremda-lab/deps:<key>``: the rest of one resolved requirement set. Both come from
   :func:`oremda_lab.runtime.environments.lock`, the resolver behind the local runtime's
   virtual environments too, installed on the host with ``uv pip install --target``
   for the base's Python and platform, then copied in;
4. ``oremda-lab/worker:<version>-<key>``: the worker half of this package
   (:func:`~oremda_lab.runtime.environments.worker_files`) under ``/opt/oremda/lib``,
   the non-root user and the entry point;
5. ``oremda/<name>:<version>`` (and ``:latest``): the operator folder at
   ``/opt/oremda/operator`` and its description as ``oremda.*`` labels
   (:func:`oremda_lab.spec.labels.spec_to_labels`, one source of truth).

Build contexts depend only on file names, contents and modes, so an unchanged layer
is a build-cache hit. Layers 2 and 3 are also saved under :func:`.rootfs.cache_dir`
once built, so a fresh engine loads them instead of building them. The same builder
targets Podman through its Docker-compatible API (``--engine podman``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from oremda_lab._version import __version__
from oremda_lab.images import rootfs
from oremda_lab.registry import Registry, default_registry
from oremda_lab.runtime.docker import OPERATOR_DIR, SOURCE_DIGEST_LABEL, USER, connect, image_ref
from oremda_lab.runtime.environments import CORE_REQUIREMENTS, Lock, lock, python_matches, worker_files
from oremda_lab.spec.labels import spec_to_labels
from oremda_lab.spec.operator import OperatorSpec

LIB_DIR = "/opt/oremda/lib"
BASE_REPOSITORY = "oremda-lab/base"
CORE_REPOSITORY = "oremda-lab/core"
DEPS_REPOSITORY = "oremda-lab/deps"
WORKER_REPOSITORY = "oremda-lab/worker"
# On core and deps layers (so inherited by the images above): the pinned lines they add.
REQUIREMENTS_LABEL = "oremda-lab.requirements"
# Debian bookworm's python3, what an operator's "python" is checked against.
BASE_PYTHON = "3.11.2"

_SITE_DOCKERFILE = f"""\
FROM {{parent}}
COPY site/ {rootfs.SITE_DIR}/
"""
_WORKER_DOCKERFILE = f"""\
FROM {{deps}}
COPY lib/ {LIB_DIR}/
ENV PYTHONPATH={LIB_DIR} PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp \\
    LANG=C.UTF-8 MPLCONFIGDIR=/tmp
USER {USER}
WORKDIR /data
ENTRYPOINT ["/usr/bin/tini", "-g", "--"]
CMD ["python3", "-m", "oremda_lab.worker", "--help"]
"""
_OPERATOR_DOCKERFILE = f"""\
FROM {{base}}
COPY operator/ {OPERATOR_DIR}/
"""

# A build context: archive name -> file content, or a folder copied whole under that name.
Context = dict[str, "bytes | Path"]


class ImageBuilder:
    """Builds operator images into one engine (Docker, or Podman's compat API)."""

    def __init__(
        self,
        client: Any,
        *,
        engine: str = "docker",
        registry: Registry | None = None,
        log: Callable[[str], None] = print,
    ):
        self.client = client
        self.engine = engine
        self.prefix = "localhost/" if engine == "podman" else ""
        self.registry = registry or default_registry()
        self.log = log
        self._workers: dict[tuple[str, ...], str] = {}  # lock lines -> worker image, this run

    # -- layers ------------------------------------------------------------------

    def lock(self, spec: OperatorSpec) -> Lock:
        """The resolved requirements of ``spec`` for the base's Python.

        Raises ValueError when ``spec`` asks for a Python the base does not have.
        """
        if spec.python and not python_matches(spec.python, BASE_PYTHON):
            raise ValueError(
                f"operator {spec.name} asks for Python {spec.python}, but operator images run Debian "
                f'{rootfs.SUITE}\'s Python {BASE_PYTHON}: drop its "python", or build a third-party image '
                "on a base with that Python (docs/third_party_images.md)"
            )
        return lock(spec.requirements, rootfs.PYTHON_VERSION)

    def base_image(self) -> str:
        """Import the base root filesystem unless the engine has it already."""
        tag = f"{self.prefix}{BASE_REPOSITORY}:{rootfs.rootfs_key()}"
        if not self._exists(tag):
            tarball = rootfs.build_rootfs(log=self.log)
            self.log(f"importing {tarball.name} as {tag} ...")
            self.import_rootfs(tarball, tag)
        return tag

    def import_rootfs(self, tarball: Path, tag: str) -> str:
        """``import`` a root filesystem tarball as image ``tag``; returns ``tag``."""
        repo, _, version = tag.rpartition(":")
        with open(tarball, "rb") as f:
            # the compat APIs take the tarball as the request body (docker import -)
            reply = self.client.api.import_image_from_data(
                f, repository=repo, tag=version, changes=[f"LABEL oremda-lab.rootfs={tarball.name}"]
            )
        # Podman's compat import ignores the tag (it names the image :latest): tag by id.
        found = re.findall(r"sha256:[0-9a-f]{64}", str(reply))
        if not found:
            raise RuntimeError(f"importing {tarball} gave no image id: {str(reply)[:500]}")
        self.client.api.tag(found[-1], repo, version)
        if version != "latest":
            try:  # drop the :latest name Podman gave it (only if it is this image)
                if self.client.images.get(f"{repo}:latest").id == found[-1]:
                    self.client.api.remove_image(f"{repo}:latest", noprune=True)
            except Exception:
                pass
        return tag

    def deps_image(self, resolved: Lock) -> str:
        """The base plus the packages of ``resolved``: a core layer, then one for the rest."""
        core = {canonicalize_name(name) for name in CORE_REQUIREMENTS}
        lines: dict[bool, list[str]] = {True: [], False: []}
        for line in resolved.lines:
            lines[canonicalize_name(Requirement(line).name) in core].append(line)
        parent = self._site_layer(CORE_REPOSITORY, self.base_image(), lines[True])
        return self._site_layer(DEPS_REPOSITORY, parent, lines[False])

    def _site_layer(self, repository: str, parent: str, lines: list[str]) -> str:
        """``parent`` plus a ``dist-packages`` layer holding ``lines`` (a new name only, if none).

        A layer once built is kept as a saved image in :func:`~.rootfs.cache_dir` (its name
        hashes the layers below and ``lines``), so a fresh engine loads it in seconds
        instead of building it again (about 8x faster for a 800 MB layer).
        """
        # Keyed by the digests of the layers below, not the parent's name: a layer built in
        # one engine sits on exactly those, so it is loaded only where they are the same.
        below = self.client.images.get(parent).attrs["RootFS"]["Layers"]
        name = f"{repository}:{_hash([rootfs.SITE_LAYOUT, *below, *lines])}"
        tag = self.prefix + name
        if self._exists(tag):
            return tag
        if not lines:
            self.client.api.tag(parent, *tag.rsplit(":", 1))
            return tag
        cached = rootfs.cache_dir() / f"{name.replace('/', '-').replace(':', '-')}.tar"
        if cached.exists():
            self.log(f"{tag}: loading {cached}")
            self._load(cached, tag)
            os.utime(cached)  # recently used: kept by _forget_unused
            return tag
        with tempfile.TemporaryDirectory(prefix="oremda-site-") as work:
            started = time.monotonic()
            site = rootfs.install_site(lines, Path(work) / "site")
            self.log(f"{tag}: {len(lines)} package(s) installed in {time.monotonic() - started:.1f} s")
            context: Context = {"Dockerfile": _SITE_DOCKERFILE.format(parent=parent).encode(), "site": site}
            self._build(context, tag, {REQUIREMENTS_LABEL: json.dumps(lines)})
        self._save(tag, cached)
        return tag

    def worker_image(self, deps: str) -> str:
        """``deps`` plus this package's worker code: what operator images start ``FROM``."""
        files = worker_files()
        key = _hash([deps, *(f"{name}:{hashlib.sha256(data).hexdigest()}" for name, data in sorted(files.items()))])
        tag = f"{self.prefix}{WORKER_REPOSITORY}:{__version__}-{key}"
        if not self._exists(tag):
            context: Context = {"Dockerfile": _WORKER_DOCKERFILE.format(deps=deps).encode()}
            context.update({f"lib/oremda_lab/{name}": data for name, data in files.items()})
            self._build(context, tag, {"oremda-lab.version": __version__, "oremda-lab.deps": deps})
        return tag

    def environment_image(self, spec: OperatorSpec) -> str:
        """The worker image ``spec``'s image starts ``FROM`` (made once per lock in a run)."""
        resolved = self.lock(spec)
        if resolved.lines not in self._workers:
            self._workers[resolved.lines] = self.worker_image(self.deps_image(resolved))
        return self._workers[resolved.lines]

    def operator_image(self, spec: OperatorSpec) -> str:
        """Build ``oremda/<name>:<version>`` (and ``:latest``); returns the image id."""
        if spec.path is None:
            raise ValueError(f"operator {spec.name} has no folder to build from")
        base = self.environment_image(spec)
        context: Context = {"Dockerfile": _OPERATOR_DOCKERFILE.format(base=base).encode(), "operator": Path(spec.path)}
        labels = spec_to_labels(spec)
        labels[SOURCE_DIGEST_LABEL] = spec.digest
        labels["oremda-lab.base"] = base
        labels["org.opencontainers.image.title"] = f"{image_ref(spec.name)} (oremda-lab operator)"
        labels["org.opencontainers.image.version"] = spec.version
        tag = image_ref(spec.name, spec.version, self.prefix)
        image_id = self._build(context, tag, labels)
        self.client.api.tag(image_id, tag.rpartition(":")[0], "latest")
        return image_id

    def build(self, names: Iterable[str] | None = None, *, jobs: int = 4) -> dict[str, str]:
        """Build the named operators (default: all); returns name -> image id.

        Environment layers are made first, one at a time (operators share them); the thin
        operator layers then build ``jobs`` at a time, which the engine overlaps well.
        """
        specs = [self.registry.get(n) for n in names] if names else self.registry.all()
        for spec in specs:
            self.environment_image(spec)

        def one(spec: OperatorSpec) -> str:
            start = time.monotonic()
            image_id = self.operator_image(spec)
            self.log(f"{image_ref(spec.name, spec.version, self.prefix)}  {image_id[:19]}  "
                     f"({time.monotonic() - start:.1f} s)")  # fmt: skip
            return image_id

        with ThreadPoolExecutor(max(1, jobs)) as pool:
            return dict(zip([spec.name for spec in specs], pool.map(one, specs), strict=True))

    # -- engine calls --------------------------------------------------------------

    def _exists(self, ref: str) -> bool:
        import docker.errors

        try:
            self.client.images.get(ref)
            return True
        except docker.errors.ImageNotFound:
            return False

    def _build(self, context: Context, tag: str, labels: dict[str, str]) -> str:
        """Build ``context`` as image ``tag``; returns the image id."""
        with tempfile.TemporaryFile() as archive:
            write_context(context, archive)
            archive.seek(0)
            stream = self.client.api.build(
                fileobj=archive, custom_context=True, tag=tag, labels=labels, rm=True, forcerm=True, decode=True
            )
            output = []
            for chunk in stream:
                if "error" in chunk:
                    raise RuntimeError(f"building {tag} failed: {chunk['error']}\n{''.join(output)[-2000:]}")
                output.append(chunk.get("stream", ""))
        return self.client.images.get(tag).id

    def _save(self, tag: str, path: Path) -> None:
        """``docker save`` image ``tag`` to ``path`` (written whole, then renamed)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")  # two builders may save the same layer
        with open(partial, "wb") as f:
            for chunk in self.client.api.get_image(tag):
                f.write(chunk)
        partial.rename(path)
        _forget_unused(path.parent)

    def _load(self, path: Path, tag: str) -> None:
        """``docker load`` a saved image and name it ``tag`` (Podman may name it otherwise)."""
        with open(path, "rb") as f:
            reply = [chunk for chunk in self.client.api.load_image(f) if chunk]
        if any("error" in chunk for chunk in reply):
            raise RuntimeError(f"loading {path} failed: {reply}")
        text = " ".join(str(chunk.get("stream", "")) for chunk in reply)
        loaded = re.findall(r"Loaded image(?: ID)?: (\S+)", text)
        if not loaded:
            raise RuntimeError(f"loading {path} named no image: {text[:500]}")
        if loaded[-1] != tag:
            self.client.api.tag(loaded[-1], *tag.rsplit(":", 1))


def _forget_unused(folder: Path, days: float = 30) -> None:
    """Remove saved layers not loaded or built for ``days`` (each may be hundreds of MB)."""
    for old in folder.glob("oremda-lab-*.tar"):
        if time.time() - old.stat().st_mtime > days * 86400:
            old.unlink(missing_ok=True)


def write_context(context: Context, out: IO[bytes]) -> None:
    """Write a build context as a tar stream that depends only on names, contents and modes.

    Entries are sorted and times and owners zeroed, so equal content gives an equal
    context (a build-cache hit). Files are world-readable (the worker runs as uid 1001)
    and keep their execute bit. Folders skip ``__pycache__`` (stale bytecode of an
    operator folder) except where precompiled on purpose (``site``).
    """
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, value in sorted(context.items()):
            if not isinstance(value, Path):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(value), 0o644, 0
                tar.addfile(info, io.BytesIO(value))
                continue
            for path in sorted(value.rglob("*")):
                if name != "site" and "__pycache__" in path.relative_to(value).parts:
                    continue
                info = tar.gettarinfo(str(path), arcname=f"{name}/{path.relative_to(value)}")
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if info.isreg():
                    info.mode = 0o755 if info.mode & 0o111 else 0o644
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:  # folders and symlinks
                    info.mode = 0o755 if info.isdir() else info.mode
                    tar.addfile(info)


def transfer(source: Any, target: Any, specs: Iterable[OperatorSpec], log: Callable[[str], None] = print) -> None:
    """Copy operator images from one engine to another (``docker save | podman load``).

    Much faster than building again with Podman's builder, and the images keep their
    ids, so provenance digests agree across engines. Podman names them ``localhost/``.
    Tags the target already has with the same id are not copied again (each operator
    image carries its whole environment: copying them all takes minutes).
    """
    refs = []
    for spec in specs:
        refs += [image_ref(spec.name, spec.version), image_ref(spec.name)]
    refs = [ref for ref in refs if _image_id(target, ref) != _image_id(source, ref)]
    if not refs:
        log("the target has every image already")
        return
    start = time.monotonic()
    response = source.api.get(source.api._url("/images/get"), params={"names": refs}, stream=True)
    response.raise_for_status()
    for chunk in target.api.load_image(response.iter_content(1 << 20)):
        if "error" in chunk:
            raise RuntimeError(f"loading images failed: {chunk['error']}")
    log(f"copied {len(refs)} image tags in {time.monotonic() - start:.1f} s")


def _image_id(client: Any, ref: str) -> str | None:
    """The id of ``ref`` in an engine (Podman's local name tried too), or None."""
    import docker.errors

    for name in (ref, f"localhost/{ref}"):
        try:
            return client.images.get(name).id
        except docker.errors.ImageNotFound:
            continue
    return None


def _hash(parts: Iterable[str]) -> str:
    return hashlib.sha256(json.dumps(list(parts)).encode()).hexdigest()[:12]


def main(argv: list[str] | None = None) -> int:
    """Command line: ``oremda-lab build [NAMES] [--engine docker|podman|apptainer]``."""
    parser = argparse.ArgumentParser(prog="oremda-lab build", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``build`` options (shared with the ``oremda-lab`` command)."""
    parser.add_argument("names", nargs="*", help="operators to build (default: all)")
    parser.add_argument("--engine", choices=("docker", "podman", "apptainer"), default="docker",
                        help="where to put the images; apptainer converts the Docker images to SIF files")  # fmt: skip
    parser.add_argument("--base-url", help="the engine's API socket (default: DOCKER_HOST / OREMDA_PODMAN_HOST)")
    parser.add_argument("--sif-dir", help="with --engine apptainer: where SIF files go (default: OREMDA_SIF_DIR)")
    parser.add_argument("--operators", action="append", default=[], help="extra operator folder (repeatable)")
    parser.add_argument("--jobs", type=int, default=4, help="operator layers built at once (default 4)")
    parser.add_argument("--from-docker", action="store_true",
                        help="with --engine podman: build in Docker (DOCKER_HOST), then copy images over")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``build`` command; returns the exit status."""
    from oremda_lab.runtime import RuntimeUnavailable

    registry = Registry(args.operators) if args.operators else default_registry()
    engine = "docker" if args.engine == "apptainer" or args.from_docker else args.engine
    try:
        client = connect(None if args.from_docker else args.base_url, engine)
        target = connect(args.base_url, args.engine) if args.from_docker else None
    except RuntimeUnavailable as e:
        print(f"oremda-lab build: {e}", file=sys.stderr)
        return 2
    try:
        builder = ImageBuilder(client, engine=engine, registry=registry, log=lambda m: print(m, flush=True))
        built = builder.build(args.names or None, jobs=args.jobs)
        if target is not None:
            transfer(client, target, [registry.get(name) for name in built], log=lambda m: print(m, flush=True))
        if args.engine == "apptainer":
            from oremda_lab.runtime.apptainer import build_sif

            for name in built:
                spec = registry.get(name)
                print(build_sif(spec, sif_dir=args.sif_dir), flush=True)
    except (KeyError, RuntimeError, ValueError) as e:
        print(f"oremda-lab build: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
