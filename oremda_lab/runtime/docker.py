"""Workers in Docker (or Podman) containers, one warm container per operator.

Images are named ``oremda/<name>:<version>`` and describe their operator in
``oremda.*`` labels (built by ``oremda-lab build``); :class:`ImageCatalog` reads those
labels without running anything. Every container is hardened the same way:

* network ``none`` unless the operator's description asks for it (``http_reader``);
* user 1001, read-only root filesystem, all capabilities dropped, no new privileges;
* two mounts only: the session's shared-memory folder at the *same path* (so object
  references and the control socket work unchanged) and the data folder, read-only,
  at ``/data``; a small private tmpfs on ``/tmp`` for libraries that need scratch space;
* labels ``oremda.session`` (the session folder) and ``oremda.owner`` (engine pid and
  start time), so containers of a kernel that died are swept at the next start-up;
* removed when their worker stops (after their log is kept for the node error).

Podman is the same runtime pointed at Podman's Docker-compatible service
(``podman system service``), which is what NERSC's podman-hpc wraps: see
:class:`PodmanRuntime`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from oremda_lab.dataplane.arena import Arena, owner_alive, owner_record, process_start_time
from oremda_lab.registry import IMAGE_REPOSITORY, names_image, split_reference
from oremda_lab.runtime import RuntimeUnavailable
from oremda_lab.runtime.base import Runtime, WorkerHandle, process_alive
from oremda_lab.spec.labels import labels_to_spec
from oremda_lab.spec.operator import OperatorSpec
from oremda_lab.spec.pipeline import operator_name

OPERATOR_DIR = "/opt/oremda/operator"  # where the operator folder sits in its image
DATA_MOUNT = "/data"
PYTHON = "python3"
USER = "1001:1001"  # the images' default user; workers run as the caller (container_options)
SESSION_LABEL = "oremda.session"
OWNER_LABEL = "oremda.owner"
# Extra image labels written by the builder (not part of the operator description).
SOURCE_DIGEST_LABEL = "oremda-lab.source-digest"
PODMAN_HOST_ENV = "OREMDA_PODMAN_HOST"
DEFAULT_PODMAN_HOST = "unix:///run/podman/podman.sock"
_TMPFS = {"/tmp": "rw,noexec,nosuid,size=256m"}
_STOP_GRACE = 2  # seconds between SIGTERM and SIGKILL


def image_ref(name: str, version: str | None = None, prefix: str = "") -> str:
    """The image reference of operator ``name``.

    Examples
    --------
    >>> image_ref("gaussian_blur", "1.0.0")
    'oremda/gaussian_blur:1.0.0'
    >>> image_ref("crop2d", prefix="localhost/")
    'localhost/oremda/crop2d:latest'
    """
    return f"{prefix}{IMAGE_REPOSITORY}/{name}:{version or 'latest'}"


def connect(base_url: str | None = None, engine: str = "docker", timeout: float = 120) -> Any:
    """A docker SDK client for ``engine``, or :class:`RuntimeUnavailable` saying why not.

    Docker honours ``DOCKER_HOST`` (``base_url`` wins); Podman uses ``OREMDA_PODMAN_HOST``,
    ``CONTAINER_HOST``, then ``/run/podman/podman.sock``.
    """
    try:
        import docker
    except ImportError:
        hint = "pip install 'oremda-lab[docker]'"
        raise RuntimeUnavailable(f"the {engine} runtime needs the docker SDK: {hint}") from None
    if engine == "podman" and base_url is None:
        base_url = os.environ.get(PODMAN_HOST_ENV) or os.environ.get("CONTAINER_HOST") or DEFAULT_PODMAN_HOST
    where = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    hint = "start `podman system service --time=0 unix://SOCKET`" if engine == "podman" else "start dockerd"
    if where.startswith("unix://"):
        # Probe the socket ourselves: the SDK leaks its socket when the connect fails.
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(5)
                probe.connect(where[len("unix://") :])
        except OSError as e:
            raise RuntimeUnavailable(f"no {engine} engine answers at {where} ({e}); {hint} or set its socket") from None
    client = None
    try:
        if base_url:
            client = docker.DockerClient(base_url=base_url, timeout=timeout)
        else:
            client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as e:
        if client is not None:
            client.close()  # its half-open socket would otherwise linger until collected
        raise RuntimeUnavailable(f"no {engine} engine answers at {where} ({e}); {hint} or set its socket") from None
    return client


class ImageCatalog:
    """Operator specs read from the labels of one engine's images, without running anything.

    ``lookup`` accepts what pipelines name: ``oremda/<name>[:tag]`` or a bare name (the
    operator's local image), or an exact reference (``REGISTRY/ORG/NAME:TAG``,
    ``...@sha256:...``). The spec it returns carries ``image``: the reference with the
    registry digest when the image has one for that repository, so the runtime starts
    exactly the image that was described. :meth:`pull` and :meth:`push` move images
    between the engine and a registry.
    """

    def __init__(self, client: Any, prefix: str = "", engine: str = "docker"):
        self.client = client
        self.prefix = prefix
        self.engine = engine
        self._specs: dict[str, OperatorSpec] = {}  # image id -> spec from its labels

    def lookup(self, image: str) -> OperatorSpec | None:
        """The spec in the labels of ``image``; None when there is no such operator image here.

        Misses are not remembered, so an image pulled later is found.
        """
        ref = self.resolve(image)
        found = self.get(ref)
        if found is None or "oremda.name" not in (found.labels or {}):
            return None
        return self._spec(found.id, found.labels, found.attrs.get("RepoDigests"), ref)

    def get(self, ref: str) -> Any:
        """The engine's image for ``ref`` (docker SDK ``Image``), or None."""
        import docker.errors

        try:
            return self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as e:
            # A reference the engine cannot parse names no image (Podman answers 500 for it).
            if e.status_code in (400, 404) or "normalizing" in str(e.explanation):
                return None
            raise

    def resolve(self, image: str) -> str:
        """The full local reference for what a pipeline names (adds ``oremda/``, tag, prefix)."""
        if names_image(image):
            name = split_reference(image)
            return image if name.tag or name.digest else f"{image}:latest"
        name = split_reference(image)
        repository = name.repository.removeprefix("localhost/")
        if "/" not in repository:
            repository = f"{IMAGE_REPOSITORY}/{repository}"
        return f"{self.prefix}{repository}:{name.tag or 'latest'}"

    def all(self) -> list[OperatorSpec]:
        """Every operator image present (newest per name), sorted by name."""
        specs: dict[str, OperatorSpec] = {}
        # The listing itself, not an inspect per image: another process may remove one meanwhile.
        images = self.client.api.images(filters={"label": "oremda.name"})
        for image in sorted(images, key=lambda i: i.get("Created") or 0, reverse=True):
            tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
            if not tags:
                continue
            try:
                spec = self._spec(image["Id"], image.get("Labels"), image.get("RepoDigests"), tags[0])
            except ValueError:
                continue  # labels that do not describe an operator
            specs.setdefault(spec.name, spec)
        return [specs[k] for k in sorted(specs)]

    def exact(self, repo_digests: list[str] | None, ref: str) -> str:
        """``ref`` pinned to its registry digest when the image has exactly one for that repository.

        ``repo_digests`` is the image's ``RepoDigests``.

        Docker keeps one digest per repository; Podman lists every digest under every
        name of the image, so an ambiguous list pins nothing (the image id still does).
        """
        name = split_reference(ref)
        if name.digest:
            return ref
        digests = {
            d.partition("@")[2] for d in registry_digests(repo_digests) if d.partition("@")[0] == name.repository
        }
        return f"{name.repository}@{digests.pop()}" if len(digests) == 1 else ref

    def _spec(
        self, image_id: str, labels: dict[str, str] | None, repo_digests: list[str] | None, ref: str
    ) -> OperatorSpec:
        if image_id not in self._specs:
            self._specs[image_id] = labels_to_spec(labels or {})
        return dataclasses.replace(self._specs[image_id], image=self.exact(repo_digests, ref))

    # -- registries ----------------------------------------------------------------

    def pull(self, ref: str, progress: Callable[[str], None] | None = None) -> Any:
        """Pull ``ref`` from its registry; returns the image. Raises LookupError saying why not.

        ``progress(message)`` hears what happens (about one line per layer).
        """
        import docker.errors

        say = progress or (lambda message: None)
        name = split_reference(ref)
        say(f"pulling {ref}")
        layers: set[str] = set()  # Docker announces every layer first, by id
        done: set[str] = set()
        try:
            for line in self._pull_stream(ref):
                if line.get("error"):
                    raise LookupError(f"cannot pull {ref}: {line['error'].strip()}")
                status = str(line.get("status") or line.get("stream") or "").strip()
                layer = str(line.get("id", ""))
                if status in ("Pulling fs layer", "Waiting", "Already exists", "Pull complete"):
                    layers.add(layer)
                if status in ("Pull complete", "Already exists"):
                    done.add(layer)
                    say(f"pulling {ref}: {len(done)}/{len(layers)} layers")
                elif status.startswith("Copying blob"):  # Podman: one line per layer, no total
                    done.add(status)
                    say(f"pulling {ref}: layer {len(done)}")
        except docker.errors.APIError as e:
            raise LookupError(f"cannot pull {ref}: {e.explanation or e}") from None
        image = self.get(str(name._replace(tag="")) if name.digest else ref)
        if image is None:
            raise LookupError(f"cannot pull {ref}: the engine reports no image after the pull")
        say(f"pulled {ref} ({image.id[:19]})")
        return image

    def _pull_stream(self, ref: str) -> Iterator[dict[str, Any]]:
        """The engine's progress messages while it pulls ``ref``."""
        name = split_reference(ref)
        if self.engine != "podman":
            tag = name.digest or name.tag or "latest"
            return self.client.api.pull(name.repository, tag=tag, stream=True, decode=True)
        # The compat pull cannot skip TLS; Podman's own API can (a loopback registry is plain HTTP).
        api = self.client.api
        response = api._post(
            api._url("/libpod/images/pull"),
            params={"reference": ref, "tlsVerify": str(not _loopback(ref)).lower()},
            stream=True,
        )
        if response.status_code >= 400:
            return iter([{"error": _error_text(response)}])
        return api._stream_helper(response, decode=True)

    def push(self, image: str, target: str, progress: Callable[[str], None] | None = None) -> str:
        """Tag local ``image`` as ``target`` (``REGISTRY/ORG/NAME:TAG``) and push it.

        Returns ``target@sha256:...`` with the registry's manifest digest. Raises
        LookupError when the image is missing and RuntimeError when the push fails.
        """
        say = progress or (lambda message: None)
        found = self.get(image)
        if found is None:
            raise LookupError(
                f"no image {image} in the {self.engine} engine; build it first: oremda-lab build --engine {self.engine}"
            )
        name = split_reference(target)
        found.tag(name.repository, name.tag or "latest")
        say(f"pushing {target}")
        api = self.client.api
        digest = None
        if self.engine == "podman":
            response = api._post(
                api._url("/libpod/images/{0}/push", target),
                params={"destination": target, "tlsVerify": str(not _loopback(target)).lower()},
            )
            if response.status_code >= 400:
                raise RuntimeError(f"push of {target} failed: {_error_text(response)}")
            # Podman 4.3 does not say which manifest it wrote: ask the registry.
            digest = registry_digest(target)
        else:
            for line in api.push(name.repository, tag=name.tag or "latest", stream=True, decode=True):
                if line.get("error"):
                    raise RuntimeError(f"push of {target} failed: {line['error'].strip()}")
                digest = (line.get("aux") or {}).get("Digest") or digest
        if not digest:
            raise RuntimeError(f"pushed {target}, but the registry did not report its digest")
        say(f"pushed {target}@{digest}")
        return f"{target}@{digest}"


def registry_digests(repo_digests: list[str] | None) -> list[str]:
    """The ``REPOSITORY@sha256:...`` names in an image's ``RepoDigests`` that a registry gave it.

    Podman also lists a digest it made up for its local ``localhost/NAME`` store, which
    no registry serves: left out.

    Examples
    --------
    >>> registry_digests(["localhost/oremda/crop2d@sha256:aa", "ghcr.io/lab/crop2d@sha256:bb"])
    ['ghcr.io/lab/crop2d@sha256:bb']
    """
    return [d for d in repo_digests or [] if not d.startswith("localhost/")]


def _loopback(ref: str) -> bool:
    """Whether ``ref``'s registry is on this host (plain HTTP, as Docker assumes for 127.0.0.0/8)."""
    host = split_reference(ref).repository.split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error_text(response: Any) -> str:
    try:
        return str(response.json().get("message") or response.text).strip()
    except ValueError:
        return response.text.strip()


_MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


def registry_digest(ref: str, timeout: float = 30) -> str | None:
    """The manifest digest a registry serves for ``REGISTRY/PATH:TAG``, from its HTTP API.

    Anonymous access only (HTTP for loopback registries, else HTTPS); None when the
    registry does not answer it.
    """
    import urllib.error
    import urllib.request

    name = split_reference(ref)
    host, _, path = name.repository.partition("/")
    scheme = "http" if _loopback(ref) else "https"
    url = f"{scheme}://{host}/v2/{path}/manifests/{name.digest or name.tag or 'latest'}"
    request = urllib.request.Request(url, method="HEAD", headers={"Accept": ", ".join(_MANIFEST_TYPES)})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.headers.get("Docker-Content-Digest")
    except (urllib.error.URLError, OSError):
        return None


class ContainerHandle(WorkerHandle):
    """A worker container, watched without polling the engine.

    When the engine runs on this host (a local socket), the container's init process is
    visible in ``/proc``: liveness is a look at ``/proc/<pid>/stat`` (start time compared,
    zombies count as dead), and the engine is asked only once, for the exit code. For a
    remote engine a waiter thread blocks on ``container.wait()`` instead. (Podman's wait
    endpoint polls internally and cost 0.3 ms per warm hop on 2 cores; /proc costs nothing.)
    """

    def __init__(self, client: Any, container: Any, log: Path | None = None):
        self.client = client
        self.container = container
        self.log = log
        self._status: int | None = None
        self._ended = threading.Event()
        self._log: str | None = None
        self._lock = threading.Lock()
        self._pid: tuple[int, int] | None = None
        try:
            container.reload()
            state = container.attrs["State"]
            pid = int(state.get("Pid") or 0)
        except Exception:
            state, pid = {}, 0
        started = process_start_time(pid) if pid > 0 else None
        if started is not None:
            self._pid = (pid, started)
        elif state and not state.get("Running", True):
            self._finish()  # it already exited
        else:
            threading.Thread(target=self._wait, name=f"oremda-wait-{container.short_id}", daemon=True).start()

    def _wait(self) -> None:
        try:
            self._status = int(self.container.wait()["StatusCode"])
        except Exception:
            try:  # the wait connection broke: ask once more
                self.container.reload()
                state = self.container.attrs["State"]
                if state.get("Running"):
                    return self._wait()
                self._status = int(state.get("ExitCode", -1))
            except Exception:
                self._status = -1  # the container is gone
        self._ended.set()

    def _finish(self) -> None:
        """Record the exit code of a container that has ended (or is ending)."""
        if self._ended.is_set():
            return
        try:
            self._status = int(self.container.wait(timeout=_STOP_GRACE + 10)["StatusCode"])
        except Exception:
            self._status = -1
        self._ended.set()

    def alive(self) -> bool:
        if self._ended.is_set():
            return False
        if self._pid is None:
            return True  # the waiter thread sets _ended
        pid, started = self._pid
        if process_alive({"pid": pid, "started": started}):
            return True
        self._finish()
        return False

    def exit_status(self) -> int | None:
        """Exit status; a death by signal N (tini reports 128+N) is -N, as for processes."""
        if not self._ended.is_set() or self._status is None:
            return None
        return -(self._status - 128) if 128 < self._status < 160 else self._status

    def log_tail(self, lines: int = 40) -> str:
        text = self._log
        if text is None:
            text = self._read_log()
        return "\n".join(text.splitlines()[-lines:])

    def _read_log(self) -> str:
        """The worker's output: its log file in the session folder, else the engine's log."""
        if self.log is not None:
            try:
                text = self.log.read_text(errors="replace").rstrip()
                if text:
                    return text
            except OSError:
                pass
        try:
            return self.container.logs(tail=200).decode(errors="replace").rstrip()
        except Exception:
            return ""

    def kill(self) -> None:
        with self._lock:
            if self._log is not None:
                return
            if self.alive():
                try:
                    self.container.stop(timeout=_STOP_GRACE)
                except Exception:
                    pass
                if self._pid is None:
                    self._ended.wait(_STOP_GRACE + 10)
                else:
                    self._finish()
            self._log = self._read_log()  # the node error quotes it after the container is gone
            try:
                self.container.remove(force=True)
            except Exception:
                pass


class DockerRuntime(Runtime):
    """Workers in hardened Docker containers started from ``oremda/<name>`` images.

    Parameters
    ----------
    base_url : str, optional
        The engine's API socket; default ``DOCKER_HOST``, else the standard socket.
    image_prefix : str
        Prepended to image references (Podman's local images live under ``localhost/``).
    check_images : bool
        Refuse to start an image built from a different operator description or code
        than the one the engine runs (compares the builder's source-digest label).
    """

    name = "docker"
    can_pull = True
    engine: ClassVar[str] = "docker"
    default_prefix: ClassVar[str] = ""
    # Podman (runc) on these machines cannot raise rlimits, so it gets explicit ones.
    ulimits: ClassVar[tuple[tuple[str, int, int], ...]] = ()

    def __init__(
        self,
        arena: Arena,
        *,
        base_url: str | None = None,
        image_prefix: str | None = None,
        check_images: bool = True,
        **options: Any,
    ):
        self.client = connect(base_url, self.engine)
        self.prefix = self.default_prefix if image_prefix is None else image_prefix
        self.check_images = check_images
        self.catalog = ImageCatalog(self.client, self.prefix, self.engine)
        self._digests: dict[str, str] = {}
        sweep_containers(self.client)
        super().__init__(arena, **options)

    # -- images ----------------------------------------------------------------

    def image(self, spec: OperatorSpec) -> str:
        """The image reference that hosts ``spec``: the image it was read from, else its version tag."""
        return spec.image or image_ref(spec.name, spec.version, self.prefix)

    def image_digest(self, spec: OperatorSpec) -> str:
        """The image id (``sha256:`` of its config) of ``spec``'s image, for run records and cache keys.

        The id names the image's content exactly, exists without a registry and is the
        same in Docker and Podman and after ``save``/``load``; :meth:`image_pin` adds the
        registry digest where there is one.
        """
        ref = self.image(spec)
        if ref not in self._digests:
            self._digests[ref] = self._get_image(ref).id
        return self._digests[ref]

    def image_pin(self, spec: OperatorSpec) -> dict[str, str]:
        """What names ``spec``'s image exactly: ``image`` and ``image_id``.

        ``image`` is ``REPOSITORY@sha256:...`` (the registry's manifest digest) when the
        image has one unambiguous registry digest, else its local reference, which only
        ``image_id`` (:meth:`image_digest`) then pins.
        """
        ref = self.image(spec)
        image = self._get_image(ref)
        exact = self.catalog.exact(image.attrs.get("RepoDigests"), ref)
        if "@" not in exact:
            digests = set(registry_digests(image.attrs.get("RepoDigests")))
            exact = digests.pop() if len(digests) == 1 else ref
        return {"image": exact, "image_id": image.id}

    def pull(self, ref: str, progress: Callable[[str], None] | None = None) -> Any:
        """Pull ``ref`` into the engine (``progress(message)`` hears how it goes); LookupError says why not."""
        return self.catalog.pull(ref, progress)

    def _get_image(self, ref: str) -> Any:
        image = self.catalog.get(ref)
        if image is None:
            hint = (
                f"pull it: oremda-lab pull --engine {self.engine} {ref}"
                if names_image(ref)
                else f"build it: oremda-lab build --engine {self.engine} {operator_name(ref)}"
            )
            raise LookupError(f"no image {ref} in the {self.engine} engine; {hint}")
        return image

    # -- workers -----------------------------------------------------------------

    def launch(self, spec: OperatorSpec, worker_id: str) -> ContainerHandle:
        """Start a hardened container running the worker for ``spec`` (pulling an exact image it lacks)."""
        ref = self.image(spec)
        if spec.image and names_image(ref) and self.catalog.get(ref) is None:
            self.pull(ref, lambda message: self.progress(self.slot_of(worker_id), message))
        image = self._get_image(ref)
        built_from = (image.labels or {}).get(SOURCE_DIGEST_LABEL)
        if self.check_images and spec.path and built_from and built_from != spec.digest:
            raise RuntimeError(
                f"image {ref} was built from another version of {spec.name} than {spec.path}; "
                f"rebuild it: oremda-lab build --engine {self.engine} {spec.name}"
            )
        self._digests[ref] = image.id
        container = self.client.containers.run(image.id, **self.container_options(spec, worker_id))
        return ContainerHandle(self.client, container, self.arena.path / "run" / f"{worker_id}.log")

    def container_options(self, spec: OperatorSpec, worker_id: str) -> dict[str, Any]:
        """The docker SDK ``containers.run`` keywords for a worker of ``spec``."""
        from docker.types import Ulimit

        session = str(self.arena.path)
        log = f"{session}/run/{worker_id}.log"
        worker = self.worker_command(worker_id, OPERATOR_DIR, python=PYTHON)
        options: dict[str, Any] = {
            # The worker's output goes to a file in the session folder, as for local workers:
            # readable at once, and after the container is gone (engine logs can lag behind).
            "command": ["/bin/sh", "-c", 'exec "$@" >>"$0" 2>&1', log, *worker],
            "detach": True,
            "name": f"oremda-{worker_id}-{os.getpid()}",
            "environment": self.worker_env(data_dir=DATA_MOUNT),
            # The caller's uid:gid, so a worker reads what the caller can (a 0700 data
            # folder too) and nothing more: no capabilities, the data mount read-only.
            "user": f"{os.getuid()}:{os.getgid()}",
            "working_dir": DATA_MOUNT,
            "read_only": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "network_mode": "bridge" if spec.network else "none",
            "volumes": {
                session: {"bind": session, "mode": "rw"},
                str(self.data_dir): {"bind": DATA_MOUNT, "mode": "ro"},
            },
            "tmpfs": dict(_TMPFS),
            "labels": {SESSION_LABEL: session, OWNER_LABEL: json.dumps(owner_record()), "oremda.worker": worker_id},
            "stdin_open": False,
            "auto_remove": False,  # removed by kill(), after its log is read
        }
        if self.engine == "podman" and os.geteuid() != 0:
            options["userns_mode"] = "keep-id"  # rootless: the caller's uid is itself inside
        if self.ulimits:
            options["ulimits"] = [Ulimit(name=n, soft=s, hard=h) for n, s, h in self.ulimits]
        return options


class PodmanRuntime(DockerRuntime):
    """The Docker runtime on Podman's Docker-compatible API (what podman-hpc wraps).

    Differences from Docker: local images are named ``localhost/oremda/<name>``; runc
    under Podman may not raise resource limits here, so nofile/nproc are set to 1024
    explicitly; rootless Podman maps uid 1001 into the user's subordinate range, so the
    session folder must be world-writable (it is: 0777 folders, 0666 files).
    """

    name = "podman"
    engine = "podman"
    default_prefix = "localhost/"
    ulimits = (("nofile", 1024, 1024), ("nproc", 1024, 1024))


def _label_owner_alive(label: str) -> bool:
    try:
        return owner_alive(json.loads(label))
    except (ValueError, TypeError):
        return False


def sweep_containers(client: Any) -> list[str]:
    """Remove worker containers whose owning process died; returns their names.

    A container counts as orphaned when its owner pid is gone (or reused by another
    process) or its session folder no longer exists. Only containers on this host's
    engine with our labels are touched.
    """
    removed = []
    try:
        containers = client.containers.list(all=True, filters={"label": SESSION_LABEL})
    except Exception:
        return removed
    for container in containers:
        labels = container.labels or {}
        session = labels.get(SESSION_LABEL, "")
        if _label_owner_alive(labels.get(OWNER_LABEL, "")) and Path(session).is_dir():
            continue
        try:
            container.remove(force=True)
            removed.append(container.name)
        except Exception:
            pass  # another process swept it first
    return removed


__all__ = ["ContainerHandle", "DockerRuntime", "ImageCatalog", "PodmanRuntime", "image_ref", "sweep_containers"]
