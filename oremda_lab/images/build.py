"""``oremda-lab build [NAMES]``: one image per operator, on one shared base, no registry.

Three layers, each rebuilt only when its inputs change:

1. ``oremda-lab/base-deps:<key>``: the root filesystem from :mod:`.rootfs` (Debian
   minbase, Python 3.11, numpy, pyarrow and the union of every operator's
   ``requirements``), brought in with the engine's *import*;
2. ``oremda-lab/base:<hash>``: adds the worker half of this package (``spec``,
   ``dataplane``, ``worker``) under ``/opt/oremda/lib``, the non-root user and the
   environment;
3. ``oremda/<name>:<version>`` (and ``:latest``): ``FROM`` the base, the operator folder
   copied to ``/opt/oremda/operator``, and its description as ``oremda.*`` labels from
   :func:`oremda_lab.spec.labels.spec_to_labels` (one source of truth).

The same builder targets Podman through its Docker-compatible API (``--engine podman``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
import tarfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from oremda_lab._version import __version__
from oremda_lab.images import rootfs
from oremda_lab.registry import Registry, default_registry
from oremda_lab.runtime.docker import OPERATOR_DIR, SOURCE_DIGEST_LABEL, USER, connect, image_ref
from oremda_lab.runtime.environments import worker_files
from oremda_lab.spec.labels import spec_to_labels
from oremda_lab.spec.operator import OperatorSpec

LIB_DIR = "/opt/oremda/lib"
DEPS_REPOSITORY = "oremda-lab/base-deps"
BASE_REPOSITORY = "oremda-lab/base"

_BASE_DOCKERFILE = f"""\
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
        self._base: str | None = None

    # -- layers ------------------------------------------------------------------

    def requirements(self) -> list[str]:
        """What the shared base installs: the SDK's and every operator's packages, pinned."""
        reqs = set(rootfs.CORE_REQUIREMENTS)
        for spec in self.registry.all():
            reqs.update(spec.requirements)
        return rootfs.pinned(reqs)

    def deps_image(self) -> str:
        """Import the base root filesystem unless the engine has it already."""
        reqs = self.requirements()
        tag = f"{self.prefix}{DEPS_REPOSITORY}:{rootfs.rootfs_key(reqs)}"
        if self._exists(tag):
            return tag
        tarball = rootfs.build_rootfs(reqs, log=self.log)
        self.log(f"importing {tarball.name} as {tag} ...")
        return self.import_rootfs(tarball, tag)

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

    def base_image(self) -> str:
        """The deps image plus this package's worker code (the FROM of every operator)."""
        if self._base is None:
            deps = self.deps_image()
            files = worker_files()
            key = _hash([deps, *(f"{name}:{hashlib.sha256(data).hexdigest()}" for name, data in sorted(files.items()))])
            tag = f"{self.prefix}{BASE_REPOSITORY}:{__version__}-{key}"
            if not self._exists(tag):
                context = {"Dockerfile": _BASE_DOCKERFILE.format(deps=deps).encode()}
                context.update({f"lib/oremda_lab/{name}": data for name, data in files.items()})
                labels = {"oremda-lab.version": __version__, "oremda-lab.deps": deps}
                self._build(context, tag, labels)
            self._base = tag
        return self._base

    def operator_image(self, spec: OperatorSpec) -> str:
        """Build ``oremda/<name>:<version>`` (and ``:latest``); returns the image id."""
        if spec.path is None:
            raise ValueError(f"operator {spec.name} has no folder to build from")
        base = self.base_image()
        context = {"Dockerfile": _OPERATOR_DOCKERFILE.format(base=base).encode()}
        for path in sorted(Path(spec.path).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                context[f"operator/{path.relative_to(spec.path)}"] = path.read_bytes()
        labels = spec_to_labels(spec)
        labels[SOURCE_DIGEST_LABEL] = spec.digest
        labels["oremda-lab.base"] = base
        labels["org.opencontainers.image.title"] = f"{image_ref(spec.name)} (oremda-lab operator)"
        labels["org.opencontainers.image.version"] = spec.version
        tag = image_ref(spec.name, spec.version, self.prefix)
        image_id = self._build(context, tag, labels)
        self.client.api.tag(image_id, tag.rpartition(":")[0], "latest")
        return image_id

    def build(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """Build the named operators (default: all); returns name -> image id."""
        specs = [self.registry.get(n) for n in names] if names else self.registry.all()
        built = {}
        for spec in specs:
            start = time.monotonic()
            built[spec.name] = self.operator_image(spec)
            self.log(f"{image_ref(spec.name, spec.version, self.prefix)}  {built[spec.name][:19]}  "
                     f"({time.monotonic() - start:.1f} s)")  # fmt: skip
        return built

    # -- engine calls --------------------------------------------------------------

    def _exists(self, ref: str) -> bool:
        import docker.errors

        try:
            self.client.images.get(ref)
            return True
        except docker.errors.ImageNotFound:
            return False

    def _build(self, files: dict[str, bytes], tag: str, labels: dict[str, str]) -> str:
        """Build a context given as name -> bytes; returns the image id."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644  # world-readable: the worker runs as uid 1001
                info.mtime = 0  # contexts with equal content are equal (build cache)
                tar.addfile(info, io.BytesIO(data))
        buffer.seek(0)
        stream = self.client.api.build(
            fileobj=buffer, custom_context=True, tag=tag, labels=labels, rm=True, forcerm=True, decode=True
        )
        output = []
        for chunk in stream:
            if "error" in chunk:
                raise RuntimeError(f"building {tag} failed: {chunk['error']}\n{''.join(output)[-2000:]}")
            output.append(chunk.get("stream", ""))
        return self.client.images.get(tag).id


def transfer(source: Any, target: Any, specs: Iterable[OperatorSpec], log: Callable[[str], None] = print) -> None:
    """Copy operator images from one engine to another (``docker save | podman load``).

    Much faster than building again with Podman's builder, and the images keep their
    ids, so provenance digests agree across engines. Podman names them ``localhost/``.
    """
    refs = []
    for spec in specs:
        refs += [image_ref(spec.name, spec.version), image_ref(spec.name)]
    start = time.monotonic()
    response = source.api.get(source.api._url("/images/get"), params={"names": refs}, stream=True)
    response.raise_for_status()
    for chunk in target.api.load_image(response.iter_content(1 << 20)):
        if "error" in chunk:
            raise RuntimeError(f"loading images failed: {chunk['error']}")
    log(f"copied {len(refs)} image tags in {time.monotonic() - start:.1f} s")


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
        built = builder.build(args.names or None)
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
