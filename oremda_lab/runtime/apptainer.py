"""Workers in Apptainer (or Singularity) instances, for HPC systems without Docker.

.. warning:: Written against Apptainer's documented command line and tested here only
   for the commands it builds and the labels it reads: no real Apptainer engine could
   be installed on the machines this was developed on. See docs/hpc.md.

Images are SIF files converted from the Docker images that ``oremda-lab build`` makes
(``apptainer build X.sif docker-daemon://oremda/<name>:<version>``, which carries the
``oremda.*`` labels over), kept in one folder (``OREMDA_SIF_DIR``, else
``~/.cache/oremda-lab/sif``) as ``<name>_<version>.sif``.

Operator images in a registry (``REGISTRY/ORG/NAME:TAG`` or ``...@sha256:...``, as
``oremda-lab push`` makes them) are pulled with ``apptainer pull docker://REF`` into the
same folder, named after the reference (:func:`sif_for_reference`); loopback registries
are reached over plain HTTP (``--nohttps``). **Untested here** like the rest of this
runtime: the commands are checked, never run.

Each worker is a warm ``apptainer instance`` (``--containall``: own PID, IPC and
environment, no home, private /tmp; SIF images are read-only; the user is the caller,
never root) with only two binds: the session's shared-memory folder at the same path and
the data folder read-only at ``/data``; ``--net --network none`` unless the operator
asks for the network. The worker loop runs in it through ``apptainer exec
instance://NAME``; the key that authenticates it travels as ``APPTAINERENV_*``
environment, never on the command line.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from oremda_lab.dataplane.arena import Arena, owner_record
from oremda_lab.registry import names_image
from oremda_lab.runtime import RuntimeUnavailable
from oremda_lab.runtime.base import Runtime, WorkerHandle, end_group
from oremda_lab.spec.labels import labels_to_spec
from oremda_lab.spec.operator import OperatorSpec, file_digest
from oremda_lab.spec.pipeline import operator_name

SIF_DIR_ENV = "OREMDA_SIF_DIR"
OPERATOR_DIR = "/opt/oremda/operator"  # as in the Docker image it was converted from
DATA_MOUNT = "/data"
PYTHON = "python3"
INSTANCE_PREFIX = "oremda-"
_COMMAND_TIMEOUT = 120.0  # instance start/stop and inspect


def find_apptainer(command: str | None = None) -> str:
    """The ``apptainer`` (else ``singularity``) executable, or RuntimeUnavailable."""
    for candidate in [command] if command else ["apptainer", "singularity"]:
        found = shutil.which(candidate) if candidate else None
        if found:
            return found
    raise RuntimeUnavailable(
        "the apptainer runtime needs the `apptainer` (or `singularity`) command on PATH; "
        "it is not installed here (HPC systems provide it as a module, e.g. `module load apptainer`)"
    )


def sif_folder(folder: str | Path | None = None) -> Path:
    """Where SIF images live: the argument, ``OREMDA_SIF_DIR``, else ~/.cache/oremda-lab/sif."""
    if folder:
        return Path(folder)
    env = os.environ.get(SIF_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "oremda-lab" / "sif"


def sif_path(spec_or_name: OperatorSpec | str, version: str | None = None, folder: str | Path | None = None) -> Path:
    """The SIF file of an operator version.

    Examples
    --------
    >>> sif_path("crop2d", "1.0.0", "/sif").as_posix()
    '/sif/crop2d_1.0.0.sif'
    """
    if isinstance(spec_or_name, OperatorSpec):
        spec_or_name, version = spec_or_name.name, spec_or_name.version
    return sif_folder(folder) / f"{spec_or_name}_{version or 'latest'}.sif"


def sif_for_reference(ref: str, folder: str | Path | None = None) -> Path:
    """The SIF file an image pulled from a registry is kept in (the reference, made a file name).

    Examples
    --------
    >>> sif_for_reference("127.0.0.1:5000/lab/blur@sha256:ab", "/sif").as_posix()
    '/sif/127.0.0.1_5000_lab_blur@sha256_ab.sif'
    """
    return sif_folder(folder) / (re.sub(r"[^A-Za-z0-9_.@-]", "_", ref) + ".sif")


def pull_command(apptainer: str, sif: Path, ref: str) -> list[str]:
    """``apptainer pull`` of a registry image into a SIF file (plain HTTP for a loopback registry).

    Examples
    --------
    >>> pull_command("apptainer", Path("/s/x.sif"), "ghcr.io/lab/blur:1")
    ['apptainer', 'pull', '--force', '/s/x.sif', 'docker://ghcr.io/lab/blur:1']
    >>> pull_command("apptainer", Path("/s/x.sif"), "127.0.0.1:5000/lab/blur:1")[2]
    '--nohttps'
    """
    host = ref.split("/", 1)[0].rsplit(":", 1)[0]
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return [apptainer, "pull", *(["--nohttps"] if loopback else []), "--force", str(sif), f"docker://{ref}"]


def build_command(apptainer: str, sif: Path, image: str) -> list[str]:
    """``apptainer build`` of a SIF from an image in the local Docker engine.

    Examples
    --------
    >>> build_command("apptainer", Path("/s/blur_1.sif"), "oremda/blur:1")
    ['apptainer', 'build', '--force', '/s/blur_1.sif', 'docker-daemon://oremda/blur:1']
    """
    return [apptainer, "build", "--force", str(sif), f"docker-daemon://{image}"]


def build_sif(spec: OperatorSpec, sif_dir: str | Path | None = None, apptainer: str | None = None) -> Path:
    """Convert the Docker image of ``spec`` (``oremda-lab build`` first) into a SIF file."""
    command = find_apptainer(apptainer)
    target = sif_path(spec, folder=sif_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    image = f"oremda/{spec.name}:{spec.version}"
    done = subprocess.run(build_command(command, target, image), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"apptainer build of {image} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return target


def parse_labels(inspect_json: str) -> dict[str, str]:
    """The labels in the output of ``apptainer inspect --labels --json``.

    Examples
    --------
    >>> parse_labels('{"data": {"attributes": {"labels": {"oremda.name": "crop2d"}}}, "type": "container"}')
    {'oremda.name': 'crop2d'}
    """
    doc = json.loads(inspect_json)
    labels = doc.get("data", {}).get("attributes", {}).get("labels", doc) if isinstance(doc, dict) else {}
    return {str(k): str(v) for k, v in (labels or {}).items()}


def read_labels(sif: str | Path, apptainer: str | None = None) -> dict[str, str]:
    """Read a SIF image's labels without running it."""
    command = find_apptainer(apptainer)
    done = subprocess.run(
        [command, "inspect", "--labels", "--json", str(sif)], capture_output=True, text=True, timeout=_COMMAND_TIMEOUT
    )
    if done.returncode != 0:
        raise RuntimeError(f"apptainer inspect {sif} failed: {done.stderr.strip()}")
    return parse_labels(done.stdout)


class SifCatalog:
    """Operator specs from the labels of the SIF files in one folder."""

    def __init__(self, folder: str | Path | None = None, apptainer: str | None = None):
        self.folder = sif_folder(folder)
        self.apptainer = apptainer
        self._specs: dict[Path, OperatorSpec | None] = {}

    def path(self, image: str) -> Path | None:
        """The SIF for what a pipeline names, or None.

        ``oremda/<name>[:version]``: the built SIF (newest when untagged); an exact
        registry reference: the SIF it was pulled into (:func:`sif_for_reference`).
        """
        if names_image(image):
            pulled = sif_for_reference(image, self.folder)
            return pulled if pulled.exists() else None
        name = operator_name(image)
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if tag and tag != "latest":
            found = sif_path(name, tag, self.folder)
            return found if found.exists() else None
        candidates = sorted(self.folder.glob(f"{name}_*.sif"), key=lambda p: p.stat().st_mtime)
        return candidates[-1] if candidates else None

    def all(self) -> list[OperatorSpec]:
        """Every operator SIF in the folder (newest per name), sorted by name."""
        specs: dict[str, OperatorSpec] = {}
        for path in sorted(self.folder.glob("*.sif"), key=lambda p: p.stat().st_mtime, reverse=True):
            spec = self._read(path)
            if spec is not None:
                specs.setdefault(spec.name, spec)
        return [specs[k] for k in sorted(specs)]

    def _read(self, path: Path) -> OperatorSpec | None:
        if path not in self._specs:
            labels = read_labels(path, self.apptainer)
            self._specs[path] = labels_to_spec(labels) if "oremda.name" in labels else None
        return self._specs[path]

    def lookup(self, image: str) -> OperatorSpec | None:
        """The spec in the labels of ``image``'s SIF; None when there is none."""
        path = self.path(image)
        if path is None:
            return None
        spec = self._read(path)
        return dataclasses.replace(spec, image=image) if spec is not None and names_image(image) else spec


class InstanceHandle(WorkerHandle):
    """The ``apptainer exec`` process running the worker loop, and its instance."""

    def __init__(self, process: subprocess.Popen, log: Path, instance: str, apptainer: str):
        self.process = process
        self.leader = owner_record(process.pid)  # it leads its own process group
        self.log = log
        self.instance = instance
        self.apptainer = apptainer

    def alive(self) -> bool:
        return self.process.poll() is None

    def exit_status(self) -> int | None:
        return self.process.poll()

    def kill(self) -> None:
        end_group(self.leader, self.alive)
        self.process.wait()
        stop_instance(self.apptainer, self.instance)


def stop_instance(apptainer: str, instance: str) -> None:
    """``apptainer instance stop`` (bounded; an instance already gone is fine)."""
    try:
        subprocess.run(
            [apptainer, "instance", "stop", "--timeout", "5", instance],
            capture_output=True,
            timeout=_COMMAND_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        pass


class ApptainerRuntime(Runtime):
    """Workers in warm Apptainer instances started from SIF images.

    Parameters
    ----------
    sif_dir : str or Path, optional
        Folder of ``<name>_<version>.sif`` files (default ``OREMDA_SIF_DIR``).
    apptainer : str, optional
        The command to use (default ``apptainer``, else ``singularity``).
    isolate_network : bool
        Pass ``--net --network none`` to operators that do not ask for the network
        (set False where the site's apptainer.conf forbids ``--net`` to users).
    """

    name = "apptainer"
    can_pull = True

    def __init__(
        self,
        arena: Arena,
        *,
        sif_dir: str | Path | None = None,
        apptainer: str | None = None,
        isolate_network: bool = True,
        **options: Any,
    ):
        self.apptainer = find_apptainer(apptainer)
        self.sif_dir = sif_folder(sif_dir)
        self.isolate_network = isolate_network
        self.catalog = SifCatalog(self.sif_dir, self.apptainer)
        self._digests: dict[Path, str] = {}
        sweep_instances(self.apptainer)
        super().__init__(arena, **options)

    def image(self, spec: OperatorSpec) -> Path:
        """The SIF file that hosts ``spec``: pulled from its registry reference, else built by name."""
        if spec.image and names_image(spec.image):
            path = sif_for_reference(spec.image, self.sif_dir)
            if not path.exists():
                raise LookupError(f"no SIF image {path}; pull it: apptainer pull {path} docker://{spec.image}")
            return path
        path = sif_path(spec, folder=self.sif_dir)
        if not path.exists():
            raise LookupError(f"no SIF image {path}; build it with `oremda-lab build --engine apptainer {spec.name}`")
        return path

    def pull(self, ref: str, progress: Callable[[str], None] | None = None) -> Path:
        """``apptainer pull docker://REF`` into the SIF folder; LookupError says why not. Untested here."""
        say = progress or (lambda message: None)
        target = sif_for_reference(ref, self.sif_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        say(f"pulling {ref}")
        try:
            done = subprocess.run(pull_command(self.apptainer, target, ref), capture_output=True, text=True)
        except OSError as e:
            raise LookupError(f"cannot pull {ref}: {e}") from None
        if done.returncode != 0:
            raise LookupError(f"cannot pull {ref}: {(done.stdout + done.stderr).strip()[-2000:]}")
        say(f"pulled {ref} ({target.name})")
        return target

    def image_digest(self, spec: OperatorSpec) -> str:
        """``sha256:`` of the SIF file (SIF images are immutable files)."""
        path = self.image(spec)
        if path not in self._digests:
            self._digests[path] = file_digest(path)
        return self._digests[path]

    def instance_name(self, worker_id: str) -> str:
        """Instance names carry the owner pid, so a later start-up can sweep orphans."""
        return f"{INSTANCE_PREFIX}{os.getpid()}-{worker_id}"

    def start_command(self, spec: OperatorSpec, sif: Path, instance: str) -> list[str]:
        """``apptainer instance start`` with the hardening and the two binds."""
        session = str(self.arena.path)
        command = [
            self.apptainer, "instance", "start",
            "--containall", "--no-home",
            "--bind", f"{session}:{session}:rw",
            "--bind", f"{self.data_dir}:{DATA_MOUNT}:ro",
        ]  # fmt: skip
        if self.isolate_network and not spec.network:
            command += ["--net", "--network", "none"]
        return [*command, str(sif), instance]

    def exec_command(self, instance: str, worker_id: str) -> list[str]:
        """``apptainer exec instance://...`` running the worker loop (clean environment)."""
        return [
            self.apptainer, "exec", "--cleanenv", "--pwd", DATA_MOUNT, f"instance://{instance}",
            *self.worker_command(worker_id, OPERATOR_DIR, python=PYTHON),
        ]  # fmt: skip

    def exec_env(self) -> dict[str, str]:
        """Host environment of the exec: worker settings as ``APPTAINERENV_*`` (survive --cleanenv)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APPTAINERENV_", "SINGULARITYENV_"))}
        for key, value in self.worker_env(data_dir=DATA_MOUNT).items():
            env[f"APPTAINERENV_{key}"] = value
            env[f"SINGULARITYENV_{key}"] = value  # older Singularity reads this prefix
        return env

    def launch(self, spec: OperatorSpec, worker_id: str) -> InstanceHandle:
        """Start an instance for ``spec`` (pulling a registry image it lacks) and the worker loop inside it."""
        if spec.image and names_image(spec.image) and not sif_for_reference(spec.image, self.sif_dir).exists():
            self.pull(spec.image, lambda message: self.progress(self.slot_of(worker_id), message))
        sif = self.image(spec)
        instance = self.instance_name(worker_id)
        log = self.arena.path / "run" / f"{worker_id}.log"
        started = subprocess.run(
            self.start_command(spec, sif, instance), capture_output=True, text=True, timeout=_COMMAND_TIMEOUT
        )
        if started.returncode != 0:
            raise RuntimeError(f"apptainer instance start failed: {(started.stdout + started.stderr).strip()[-2000:]}")
        with open(log, "wb") as out:
            process = subprocess.Popen(
                self.exec_command(instance, worker_id),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.exec_env(),
                start_new_session=True,
            )
        return InstanceHandle(process, log, instance, self.apptainer)


def parse_instance_list(listing: str) -> list[str]:
    """Instance names in ``apptainer instance list --json`` output.

    Examples
    --------
    >>> parse_instance_list('{"instances": [{"instance": "oremda-1-a", "pid": 5, "img": "/x.sif"}]}')
    ['oremda-1-a']
    """
    doc = json.loads(listing or "{}")
    return [i.get("instance", "") for i in doc.get("instances", []) if i.get("instance")]


def sweep_instances(apptainer: str) -> list[str]:
    """Stop our instances whose owner process (pid in the name) no longer exists."""
    try:
        done = subprocess.run(
            [apptainer, "instance", "list", "--json"], capture_output=True, text=True, timeout=_COMMAND_TIMEOUT
        )
        names = parse_instance_list(done.stdout) if done.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return []
    stopped = []
    for name in names:
        if not name.startswith(INSTANCE_PREFIX):
            continue
        pid = name[len(INSTANCE_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            stop_instance(apptainer, name)
            stopped.append(name)
    return stopped


__all__ = [
    "ApptainerRuntime",
    "InstanceHandle",
    "SifCatalog",
    "build_sif",
    "find_apptainer",
    "pull_command",
    "read_labels",
    "sif_for_reference",
]
