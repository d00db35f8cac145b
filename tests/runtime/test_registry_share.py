"""Sharing operators through a real OCI registry: push, pull, image-only operators, pins.

Runs against Docker (``docker`` marker) and Podman (``podman`` marker) with the
``docker-registry`` of ``conftest.py`` on localhost. The digests are checked against
what the registry itself serves (its HTTP API), and pipeline results against the
``fault`` operator's arithmetic (each node adds one to its input of ones).
"""

import json
import re
import urllib.request

import numpy as np
import pytest
from test_docker import engine_client

from oremda_lab import cli
from oremda_lab.engine import Engine
from oremda_lab.images.build import ImageBuilder
from oremda_lab.registry import Registry, split_reference
from oremda_lab.runtime.docker import ImageCatalog, PodmanRuntime
from oremda_lab.spec.pipeline import Pipeline, PipelineError
from oremda_lab.testing import FAULT_OPERATORS

SIZE = 5


def served_digest(ref: str) -> str:
    """The manifest digest the registry serves for ``ref`` (asked over HTTP, not through an engine)."""
    name = split_reference(ref)
    host, _, path = name.repository.partition("/")
    request = urllib.request.Request(
        f"http://{host}/v2/{path}/manifests/{name.tag}",
        method="HEAD",
        headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers["Docker-Content-Digest"]


def relay_pipeline(image: str) -> dict:
    """``a`` (the image-only operator, emitting SIZE ones) -> ``b`` (fault from its folder): twos."""
    return {
        "nodes": [
            {"id": "a", "image": image, "params": {"size": SIZE}},
            {"id": "b", "image": "oremda/fault", "params": {}},
        ],
        "edges": [{"type": "data", "from": {"id": "a", "port": "out"}, "to": {"id": "b", "port": "in"}}],
    }


class ShareChecks:
    engine_name = "docker"
    runtime = "docker"

    @pytest.fixture(scope="class")
    @classmethod
    def catalog(cls, oci_registry):
        """The engine's images, with fault and gaussian_blur built; what came from the registry goes after."""
        client = engine_client(cls.engine_name)
        ImageBuilder(client, engine=cls.engine_name, registry=Registry([FAULT_OPERATORS]), log=lambda m: None).build(
            ["fault", "gaussian_blur"]
        )
        prefix = PodmanRuntime.default_prefix if cls.engine_name == "podman" else ""
        yield ImageCatalog(client, prefix, cls.engine_name)
        untagged = set()
        for image in client.images.list():
            for tag in image.tags:
                if tag.startswith(f"{oci_registry}/"):
                    client.images.remove(tag)
                    untagged.add(image.id)
        for image_id in untagged:  # Podman keeps an image whose last name went: remove it too
            image = ImageCatalog(client).get(image_id)
            if image is not None and not image.tags:
                client.images.remove(image_id)

    @pytest.fixture(scope="class")
    @classmethod
    def relay(cls, catalog, oci_registry):
        """An operator that exists only in the registry: fault's image relabelled ``relay``.

        Made, pushed, then removed from the engine; returns the ``REF@sha256:`` push printed.
        """
        client = catalog.client
        fault = catalog.get(catalog.resolve("oremda/fault"))
        scratch = client.containers.create(fault.id, command=["true"])
        try:
            image = scratch.commit(
                repository=f"{oci_registry}/{cls.engine_name}-lab/relay",
                tag="1.0.0",
                changes=["LABEL oremda.name=relay", 'LABEL oremda.description="fault, under another name"'],
            )
        finally:
            scratch.remove(force=True)
        pushed = catalog.push(image.id, f"{oci_registry}/{cls.engine_name}-lab/relay:1.0.0")
        client.images.remove(image.id, force=True)
        return pushed

    def engine(self, tmp_path, runtime=None, **kwargs) -> Engine:
        return Engine(runtime or self.runtime, tmp_path, registry=Registry([FAULT_OPERATORS]), **kwargs)

    def test_push_reports_the_digest_the_registry_serves(self, relay, oci_registry):
        ref, _, digest = relay.partition("@")
        assert digest == served_digest(ref)
        with urllib.request.urlopen(f"http://{oci_registry}/v2/_catalog") as response:
            assert f"{self.engine_name}-lab/relay" in json.load(response)["repositories"]

    def test_run_pulls_a_missing_image_and_pins_its_digest(self, relay, catalog, tmp_path):
        ref, _, digest = relay.partition("@")
        assert catalog.get(ref) is None  # only in the registry
        events = []
        with self.engine(tmp_path) as engine:
            engine.subscribe(events.append)
            run = engine.run(Pipeline.from_json(relay_pipeline(ref)))
            assert run.ok, run.errors
            np.testing.assert_array_equal(run.outputs["b"]["out"].data, np.full(SIZE, 2.0))
            record = json.loads(json.dumps(run.record()))
        pulls = [e.message for e in events if e.node == "a" and e.state == "preparing"]
        assert pulls[0] == f"pulling {ref}" and pulls[-1].startswith(f"pulled {ref}")
        counts = [re.search(r": (\d+)/(\d+) layers$", m) for m in pulls]
        assert all(int(c[1]) <= int(c[2]) for c in counts if c), pulls  # never "6/1 layers"
        repository = split_reference(ref).repository
        assert record["provenance"]["nodes"]["a"]["image"] == f"{repository}@{digest}"
        assert record["provenance"]["nodes"]["a"]["operator"] == "relay"
        pinned = {n["id"]: n for n in record["pipeline"]["nodes"]}
        assert pinned["a"]["image"] == f"{repository}@{digest}"
        # b came from its folder's local build: no registry digest, so its image id pins it.
        assert pinned["b"]["image"] == "oremda/fault"
        assert pinned["b"]["image_id"] == catalog.get(catalog.resolve("oremda/fault")).id

    def test_pinned_export_runs_again_and_a_missing_digest_is_that_node_s_error(self, relay, catalog, tmp_path):
        ref, _, digest = relay.partition("@")
        with self.engine(tmp_path) as engine:
            exported = engine.run(Pipeline.from_json(relay_pipeline(ref))).export_pipeline()
            assert engine.run(Pipeline.from_json(exported)).ok
            absent = dict(exported, nodes=[dict(n) for n in exported["nodes"]])
            repository = split_reference(ref).repository
            absent["nodes"][0]["image"] = f"{repository}@sha256:{'0' * 64}"
            run = engine.run(Pipeline.from_json(absent))  # a partial graph: only what the pull left out waits
            assert list(run.errors) == ["a"] and run.errors["a"]["message"].startswith(f"cannot pull {repository}@")
            assert run.waiting == {"b": "waiting for upstream: a"}

    def test_pinned_image_id_mismatch_is_refused_before_running(self, relay, tmp_path):
        ref = relay.partition("@")[0]
        events = []
        with self.engine(tmp_path) as engine:
            exported = engine.run(Pipeline.from_json(relay_pipeline(ref))).export_pipeline()
            exported["nodes"][1]["image_id"] = "sha256:" + "1" * 64  # as if fault had been rebuilt since
            engine.subscribe(events.append)
            with pytest.raises(PipelineError, match=r"^b: pinned to fault sha256:1111"):
                engine.submit(Pipeline.from_json(exported))
        assert [e for e in events if e.state == "running"] == []

    def test_image_only_operator_on_the_local_runtime_is_a_clear_node_error(self, relay, catalog, tmp_path):
        ref = relay.partition("@")[0]
        if catalog.get(ref) is None:
            catalog.pull(ref)
        registry = Registry([FAULT_OPERATORS], catalogs=[catalog])
        with Engine("local", tmp_path, registry=registry) as engine:
            run = engine.run(Pipeline.from_json(relay_pipeline(ref)))
        assert run.errors["a"]["message"] == (
            f"operator relay exists only as image {catalog.lookup(ref).image}; use --runtime docker|podman"
        )
        assert run.nodes["b"].status == "skipped"

    def test_cli_push_pull_and_operators(self, catalog, oci_registry, capsys):
        target = f"{oci_registry}/{self.engine_name}-cli"
        assert cli.main(["push", "gaussian_blur", "--to", target, "--engine", self.engine_name]) == 0
        (line,) = capsys.readouterr().out.splitlines()
        assert re.fullmatch(rf"{re.escape(target)}/gaussian_blur:[\w.]+@sha256:[0-9a-f]{{64}}", line)
        ref, _, digest = line.partition("@")
        assert digest == served_digest(ref)
        assert cli.main(["pull", f"{split_reference(ref).repository}@{digest}", "--engine", self.engine_name]) == 0
        assert "operator gaussian_blur" in capsys.readouterr().out.splitlines()[-1]
        assert cli.main(["operators", "--engine", self.engine_name]) == 0
        listed = capsys.readouterr().out
        assert re.search(r"^gaussian_blur [\w.]+: ", listed, re.M)  # the folder wins over its images

    def test_cli_run_pulls_before_setting_a_pulled_operator_s_parameter(self, relay, catalog, tmp_path, capsys):
        ref, _, digest = relay.partition("@")
        if catalog.get(ref) is not None:
            catalog.client.images.remove(ref)
        (tmp_path / "p.json").write_text(json.dumps(relay_pipeline(ref)))
        argv = ["run", str(tmp_path / "p.json"), "--runtime", self.runtime, "--data", str(tmp_path)]
        argv += ["--out", str(tmp_path / "out"), "--set", "a.size=3", "--record", str(tmp_path / "r.json")]
        # No folder for fault here (the CLI reads the shipped library): b is fault's image, by name.
        assert cli.main(argv) == 0, capsys.readouterr().err
        assert f"a: preparing: pulling {ref}" in capsys.readouterr().out
        record = json.loads((tmp_path / "r.json").read_text())
        assert record["provenance"]["params"]["a"]["size"] == 3
        assert record["provenance"]["nodes"]["a"]["image"] == f"{split_reference(ref).repository}@{digest}"

    def test_cli_run_of_a_digest_the_registry_lacks_is_one_line_per_node(self, relay, tmp_path, capsys):
        repository = split_reference(relay.partition("@")[0]).repository
        (tmp_path / "p.json").write_text(json.dumps(relay_pipeline(f"{repository}@sha256:{'0' * 64}")))
        argv = ["run", str(tmp_path / "p.json"), "--runtime", self.runtime, "--data", str(tmp_path), "--quiet"]
        assert cli.main([*argv, "--out", str(tmp_path / "out")]) == 1
        failed, waiting = capsys.readouterr().err.splitlines()
        assert failed.startswith(f"oremda-lab: node a failed: cannot pull {repository}@sha256:0000")
        assert waiting == "oremda-lab: node b did not run: waiting for upstream: a"

    def test_a_reference_the_engine_cannot_parse_names_no_operator(self, catalog):
        for ref in ("a@b@c", "Upper/Case", "x/y\nz", "oremda/", "127.0.0.1:1/a/b@sha256:zz"):
            assert catalog.lookup(ref) is None, ref

    def test_cli_pull_of_a_missing_image_is_one_line(self, catalog, oci_registry, capsys):
        assert cli.main(["pull", f"{oci_registry}/nobody/nothing:1", "--engine", self.engine_name]) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(f"oremda-lab: error: cannot pull {oci_registry}/nobody/nothing:1")


@pytest.mark.docker
class TestDockerShare(ShareChecks):
    pass


@pytest.mark.podman
class TestPodmanShare(ShareChecks):
    engine_name = "podman"
    runtime = "podman"
