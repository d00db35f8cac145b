"""The Docker runtime against a real engine: the runtime contract, hardening, clean-up,
provenance, and the example pipelines giving the local runtime's outputs.

Needs a Docker engine (``DOCKER_HOST``) and builds the images it uses (the base is
cached); those tests carry the ``docker`` marker, off in a plain ``pytest``. The checks
are written once in :class:`ContainerChecks`; ``test_podman.py`` runs them on Podman.
Set ``OREMDA_REQUIRE_ENGINES=1`` (CI does) to fail instead of skip without an engine.
"""

import dataclasses
import functools
import ipaddress
import json
import os
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from oremda_lab.dataplane.arena import Arena
from oremda_lab.dataplane.refs import ObjectRef
from oremda_lab.engine import Engine
from oremda_lab.images.build import ImageBuilder, transfer
from oremda_lab.registry import Registry, default_registry
from oremda_lab.runtime import RuntimeUnavailable, make_runtime
from oremda_lab.runtime.base import Task
from oremda_lab.runtime.docker import OWNER_LABEL, SESSION_LABEL, ImageCatalog, connect, image_ref
from oremda_lab.spec.pipeline import Pipeline, PipelineError
from oremda_lab.testing import FAULT_OPERATORS, RuntimeContract, fault_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import data_fixtures  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "pipelines"
UPSTREAM = ROOT / "tests" / "upstream_pipelines"


def engine_client(engine: str):
    """A client for ``engine``; skip (or fail under OREMDA_REQUIRE_ENGINES) without one."""
    try:
        return connect(engine=engine)
    except RuntimeUnavailable as e:
        if os.environ.get("OREMDA_REQUIRE_ENGINES"):
            pytest.fail(str(e))
        pytest.skip(str(e))


def session_containers(client, arena_path) -> list:
    return client.containers.list(all=True, filters={"label": f"{SESSION_LABEL}={arena_path}"})


class ContainerChecks(RuntimeContract):
    """The runtime contract plus what containers add, for one engine."""

    runtime = "docker"
    engine_name = "docker"
    options = {"start_timeout": 60}

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def client(cls):
        client = engine_client(cls.engine_name)
        registry = Registry([FAULT_OPERATORS])
        builder = ImageBuilder(client, engine=cls.engine_name, registry=registry, log=lambda m: None)
        builder.build(["fault", "gaussian_blur"])
        return client

    @pytest.fixture
    def prefix(self) -> str:
        return "localhost/" if self.engine_name == "podman" else ""

    def test_containers_are_hardened(self, engine, client):
        assert engine.run(fault_pipeline({})).ok
        (container,) = session_containers(client, engine.arena.path)
        host = container.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert not host.get("CapAdd") and not host.get("Privileged")
        # Podman lists each dropped capability where Docker says ALL: ask the kernel instead.
        status = Path(f"/proc/{container.attrs['State']['Pid']}/status").read_text()
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0
        assert fields["NoNewPrivs"].strip() == "1"
        assert fields["Uid"].split()[0] == str(os.getuid())  # the caller (keep-id maps it so rootless)
        assert host["NetworkMode"] == "none"
        assert container.attrs["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
        binds = {m["Destination"]: m for m in container.attrs["Mounts"] if m["Type"] == "bind"}
        session = str(engine.arena.path)
        assert set(binds) == {session, "/data"}
        assert binds[session]["Source"] == session and binds[session]["RW"] is True
        assert binds["/data"]["RW"] is False
        labels = container.labels
        assert labels[SESSION_LABEL] == session and json.loads(labels[OWNER_LABEL])["pid"] == os.getpid()

    def test_a_private_data_folder_is_readable_and_read_only(self, tmp_path, client):
        # What mktemp -d makes: mode 0700, owned by the caller. A fixed container uid cannot read it.
        data = tmp_path / "private"
        data.mkdir(mode=0o700)
        (data / "gate").write_text("")
        (data / "untouched").write_text("as written")
        pipeline = fault_pipeline({"mode": "wait", "seconds": 30})
        with self.make_engine(data) as engine:
            run = engine.run(pipeline)
            assert run.ok, run.errors
            (container,) = session_containers(client, engine.arena.path)
            code, output = container.exec_run(["/bin/sh", "-c", "echo changed > /data/untouched"])
            assert code != 0 and b"Read-only file system" in output
        assert (data / "untouched").read_text() == "as written"

    def test_network_only_when_asked(self, tmp_path, client):
        with Arena.create() as arena:
            runtime = make_runtime(self.runtime, arena, data_dir=tmp_path)
            try:
                reader = default_registry().get("http_reader")
                blur = default_registry().get("gaussian_blur")
                assert runtime.container_options(reader, "w")["network_mode"] == "bridge"
                assert runtime.container_options(blur, "w")["network_mode"] == "none"
            finally:
                runtime.stop()

    def test_no_container_outlives_the_engine(self, tmp_path, client):
        engine = Engine(self.runtime, tmp_path, registry=Registry([FAULT_OPERATORS]), **self.options)
        session = engine.arena.path
        try:
            assert engine.run(fault_pipeline({}, {})).ok
            assert len(session_containers(client, session)) == 2
        finally:
            engine.close()
        assert session_containers(client, session) == []

    def test_orphans_of_a_dead_kernel_are_swept(self, tmp_path, client, prefix):
        dead = {"pid": 2**22 + 7, "started": 1}  # above pid_max's default: never a live process
        orphan = client.containers.create(
            f"{prefix}oremda/fault:latest",
            command=["true"],
            labels={SESSION_LABEL: "/dev/shm/oremda-0-gone", OWNER_LABEL: json.dumps(dead)},
        )
        try:
            with Engine(self.runtime, tmp_path, registry=Registry([FAULT_OPERATORS]), **self.options):
                pass
            names = [c.name for c in client.containers.list(all=True)]
            assert orphan.name not in names
        finally:
            try:
                orphan.remove(force=True)
            except Exception:
                pass

    def test_catalog_reads_the_description_from_labels(self, client, prefix):
        catalog = ImageCatalog(client, prefix)
        for name in ("fault", "gaussian_blur"):
            spec = Registry([FAULT_OPERATORS]).get(name)
            assert catalog.lookup(f"oremda/{name}").to_dict() == spec.to_dict()
        assert catalog.lookup("oremda/no_such_operator") is None
        assert "gaussian_blur" in [s.name for s in catalog.all()]

    def test_image_digest_is_the_image_id(self, engine, client, prefix):
        spec = engine.registry.get("fault")
        digest = engine.runtime.image_digest(spec)
        assert digest.startswith("sha256:")
        assert digest == client.images.get(image_ref("fault", spec.version, prefix)).id
        run = engine.run(fault_pipeline({}))
        assert run.record()["provenance"]["operators"]["fault"]["digest"] == digest

    def test_rebuilt_image_is_refused_by_a_pinned_export(self, tmp_path, client, prefix):
        registry = Registry([FAULT_OPERATORS])
        with Engine(self.runtime, tmp_path, registry=registry, **self.options) as engine:
            exported = engine.run(fault_pipeline({})).export_pipeline()
        # Same operator files, another image (as a rebuild on a newer base would give).
        ref = image_ref("fault", registry.get("fault").version, prefix)
        scratch = client.containers.create(ref, command=["true"])
        try:
            repo, _, tag = ref.rpartition(":")
            scratch.commit(repository=repo, tag=tag)
        finally:
            scratch.remove(force=True)
        try:
            with Engine(self.runtime, tmp_path, registry=registry, **self.options) as engine:
                # The export pins the image id: another image under the same tag never runs.
                with pytest.raises(PipelineError, match=r"^n0: pinned to fault sha256:"):
                    engine.run(Pipeline.from_json(exported, catalog=registry))
                # An export from before per-node pins only warns.
                del exported["provenance"]["nodes"]
                exported["nodes"][0].pop("image_id")
                with pytest.warns(UserWarning, match="fault changed since this pipeline was exported"):
                    assert engine.run(Pipeline.from_json(exported, catalog=registry)).ok
        finally:
            ImageBuilder(client, engine=self.engine_name, registry=registry, log=lambda m: None).build(["fault"])

    def start_failure(self, tmp_path, **changes) -> str:
        """Why the fault operator, with ``changes`` to its spec, fails to start."""
        spec = dataclasses.replace(Registry([FAULT_OPERATORS]).get("fault"), **changes)
        with Arena.create() as arena:
            runtime = make_runtime(self.runtime, arena, data_dir=tmp_path)
            try:
                failures = runtime.start([spec])
            finally:
                runtime.stop()
        return failures["fault"].message

    def test_stale_image_is_refused(self, tmp_path, client):
        assert "rebuild" in self.start_failure(tmp_path, description="edited since the image was built")

    def test_missing_image_says_how_to_build(self, tmp_path, client):
        assert "oremda-lab build" in self.start_failure(tmp_path, version="0.0.0-missing")

    def test_blur_equals_the_local_runtime(self, tmp_path, client):
        spec = default_registry().get("gaussian_blur")
        image = np.random.default_rng(0).random((128, 96)).astype(np.float32)
        results = {}
        for name in ("local", self.runtime):
            with Arena.create() as arena:
                runtime = make_runtime(name, arena, data_dir=tmp_path)
                try:
                    assert runtime.start([spec]) == {}
                    ref = arena.put(image, "input--image")
                    task = Task("t", "blur", spec, {"sigma": [2.0, 3.5]}, {"image": {"ref": ref.to_dict(), "meta": {}}})
                    out = runtime.submit(task).result(timeout=60).outputs["image"]
                    results[name] = np.array(arena.get(ObjectRef.from_dict(out["ref"])))
                finally:
                    runtime.stop()
        np.testing.assert_array_equal(results["local"], results[self.runtime])


# -- every example pipeline: same outputs as the local runtime -----------------------


def _outputs(pipeline: Pipeline, runtime: str, data_dir: Path) -> dict:
    with Engine(runtime, data_dir=data_dir, start_timeout=120) as engine:
        run = engine.run(pipeline, timeout=600)
        run.raise_for_errors()
        return {
            (node, port): (np.array(v.data) if isinstance(v.data, np.ndarray) else v.data, v.meta)
            for node in run.nodes
            for port, v in run.outputs[node].items()
        }


def _assert_same(local: dict, other: dict) -> None:
    assert local.keys() == other.keys()
    for key, (data, meta) in local.items():
        if isinstance(data, np.ndarray):
            np.testing.assert_array_equal(data, other[key][0], err_msg=str(key))
        else:
            assert data == other[key][0], key
        assert json.dumps(meta, sort_keys=True, default=str) == json.dumps(other[key][1], sort_keys=True, default=str)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _bridge_gateway(client) -> str:
    for name in ("bridge", "podman"):
        try:
            config = client.networks.get(name).attrs["IPAM"]["Config"][0]
        except Exception:
            continue
        # Docker 20.10 leaves Gateway out of the default bridge: it is the subnet's first host.
        return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
    pytest.skip("the engine has no bridge network to reach a host server from")


class PipelineChecks:
    runtime = "docker"
    engine_name = "docker"

    @pytest.fixture(scope="class")
    @classmethod
    def all_images(cls):
        client = engine_client(cls.engine_name)
        if cls.engine_name == "podman" and os.environ.get("DOCKER_HOST"):
            # Podman's builder takes minutes for the whole library: build in Docker, copy over.
            docker_client = engine_client("docker")
            built = ImageBuilder(docker_client, log=lambda m: None).build()
            transfer(docker_client, client, [default_registry().get(n) for n in built], log=lambda m: None)
        else:
            ImageBuilder(client, engine=cls.engine_name, log=lambda m: None).build()
        return client

    @pytest.fixture(scope="class")
    @classmethod
    def data_folder(cls):
        try:
            return data_fixtures.data_folder()
        except data_fixtures.DataUnavailable as e:
            pytest.skip(f"real test data unavailable: {e}")

    @pytest.mark.parametrize("name", ["eels_background.json", "lattice_analysis.json"])
    def test_example_pipeline_matches_local(self, name, all_images, data_folder):
        pipeline = Pipeline.load(PIPELINES / name)
        _assert_same(_outputs(pipeline, "local", data_folder), _outputs(pipeline, self.runtime, data_folder))
        assert [c for c in all_images.containers.list(all=True, filters={"label": SESSION_LABEL})] == []

    def test_blur_display_over_http_matches_local(self, all_images, tmp_path):
        folder = Path(default_registry().get("data_container").path) / "data"
        httpd = ThreadingHTTPServer(("0.0.0.0", 0), functools.partial(_Quiet, directory=str(folder)))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            port = httpd.server_address[1]
            pipeline = Pipeline.load(PIPELINES / "blur_display.json")
            pipeline.set_param("fetch", "url", f"http://127.0.0.1:{port}/lattice.tif")
            local = _outputs(pipeline, "local", tmp_path)
            pipeline.set_param("fetch", "url", f"http://{_bridge_gateway(all_images)}:{port}/lattice.tif")
            other = _outputs(pipeline, self.runtime, tmp_path)
        finally:
            httpd.shutdown()
            httpd.server_close()
        for key in local:
            if key[0] != "fetch":  # the fetch records its URL, which differs by design
                _assert_same({key: local[key]}, {key: other[key]})

    def test_upstream_1d_pipeline_matches_local(self, all_images, data_folder, tmp_path):
        # Upstream's EELS example names a file we do not have; point it at the real spectrum.
        pipeline = Pipeline.load(UPSTREAM / "pipeline_1d.json")
        reader = next(n for n, node in pipeline.nodes.items() if node.operator_name == "ncem_reader_eels")
        pipeline.set_param(reader, "filename", "coreloss_spectrum.msa")
        windows = {"background_fit": {"start": 460, "stop": 520}, "subtract": {"start": 460, "stop": 770}}
        for node, node_obj in pipeline.nodes.items():
            if node_obj.operator_name in windows:
                pipeline.set_params(node, windows[node_obj.operator_name])
        _assert_same(_outputs(pipeline, "local", data_folder), _outputs(pipeline, self.runtime, data_folder))


@pytest.mark.docker
class TestDockerRuntime(ContainerChecks):
    pass


@pytest.mark.docker
class TestDockerPipelines(PipelineChecks):
    pass


# -- without an engine ---------------------------------------------------------------------


@pytest.mark.parametrize("name, variable", [("docker", "DOCKER_HOST"), ("podman", "OREMDA_PODMAN_HOST")])
def test_missing_engine_is_a_clear_error(monkeypatch, tmp_path, name, variable):
    monkeypatch.setenv(variable, f"unix://{tmp_path}/none.sock")
    with Arena.create() as arena, pytest.raises(RuntimeUnavailable, match=f"no {name} engine answers at unix://"):
        make_runtime(name, arena)


def test_catalog_resolves_what_pipelines_name():
    assert ImageCatalog(None).resolve("oremda/crop2d") == "oremda/crop2d:latest"
    assert ImageCatalog(None).resolve("crop2d:1.0.0") == "oremda/crop2d:1.0.0"
    assert ImageCatalog(None, "localhost/").resolve("oremda/crop2d:2") == "localhost/oremda/crop2d:2"
