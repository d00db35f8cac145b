"""The Apptainer runtime: the commands it builds and the labels it reads; the runtime
contract where a real ``apptainer`` exists.

Apptainer cannot be installed on the machines this was written on, so only the first
part runs here. Its command-line tests stand ``true`` in for the executable: they check
the argument lists, never run them. The ``apptainer``-marked tests need a real engine
plus a Docker engine holding the operator images (``oremda-lab build``).
"""

import json
import shutil
import subprocess

import pytest

from oremda_lab.dataplane.arena import Arena
from oremda_lab.registry import Registry, default_registry
from oremda_lab.runtime import RuntimeUnavailable, make_runtime
from oremda_lab.runtime.apptainer import (
    ApptainerRuntime,
    SifCatalog,
    build_command,
    find_apptainer,
    parse_instance_list,
    parse_labels,
    sif_for_reference,
    sif_path,
)
from oremda_lab.spec.labels import labels_to_spec, spec_to_labels
from oremda_lab.testing import FAULT_OPERATORS, RuntimeContract
from oremda_lab.worker import protocol

TRUE = shutil.which("true")


@pytest.fixture
def runtime(tmp_path):
    with Arena.create() as arena:
        rt = ApptainerRuntime(arena, apptainer=TRUE, sif_dir=tmp_path / "sif", data_dir=tmp_path)
        try:
            yield rt
        finally:
            rt.stop()


def test_missing_apptainer_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeUnavailable, match="needs the `apptainer`"):
        find_apptainer()
    with Arena.create() as arena, pytest.raises(RuntimeUnavailable, match="not installed here"):
        make_runtime("apptainer", arena)


def test_instance_is_contained_with_two_binds_and_no_network(runtime):
    spec = default_registry().get("gaussian_blur")
    cmd = runtime.start_command(spec, sif_path(spec, folder=runtime.sif_dir), "oremda-1-w")
    session = str(runtime.arena.path)
    assert cmd[:3] == [TRUE, "instance", "start"]
    assert "--containall" in cmd and "--no-home" in cmd
    binds = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--bind"]
    assert binds == [f"{session}:{session}:rw", f"{runtime.data_dir}:/data:ro"]
    assert cmd[cmd.index("--network") + 1] == "none" and "--net" in cmd
    assert cmd[-2:] == [str(runtime.sif_dir / f"gaussian_blur_{spec.version}.sif"), "oremda-1-w"]


def test_network_operator_keeps_the_network(runtime):
    spec = default_registry().get("http_reader")
    assert "--net" not in runtime.start_command(spec, sif_path(spec), "x")


def test_network_isolation_can_be_left_to_the_site(tmp_path):
    with Arena.create() as arena:
        rt = ApptainerRuntime(arena, apptainer=TRUE, isolate_network=False)
        try:
            assert "--net" not in rt.start_command(default_registry().get("crop2d"), sif_path("crop2d"), "x")
        finally:
            rt.stop()


def test_worker_runs_in_the_instance_with_a_clean_environment(runtime):
    cmd = runtime.exec_command("oremda-1-w", "crop2d-abc")
    assert cmd[:5] == [TRUE, "exec", "--cleanenv", "--pwd", "/data"]
    assert cmd[5] == "instance://oremda-1-w"
    assert cmd[6:9] == ["python3", "-m", "oremda_lab.worker"]
    assert cmd[cmd.index("--operator") + 1] == "/opt/oremda/operator"
    assert cmd[cmd.index("--connect") + 1] == runtime.address
    assert cmd[cmd.index("--session") + 1] == str(runtime.arena.path)


def test_secret_travels_in_the_environment_not_the_command_line(runtime):
    env = runtime.exec_env()
    key = runtime.authkey.hex()
    assert env[f"APPTAINERENV_{protocol.AUTHKEY_ENV}"] == key
    assert env["APPTAINERENV_OREMDA_DATA_DIR"] == "/data"
    assert key not in " ".join(runtime.exec_command("i", "w"))


def test_instance_names_carry_the_owner_pid(runtime):
    import os

    assert runtime.instance_name("crop2d-1").startswith(f"oremda-{os.getpid()}-")


def test_build_converts_from_the_docker_daemon(tmp_path):
    spec = default_registry().get("crop2d")
    target = sif_path(spec, folder=tmp_path)
    assert build_command("apptainer", target, f"oremda/crop2d:{spec.version}") == [
        "apptainer", "build", "--force", str(target), f"docker-daemon://oremda/crop2d:{spec.version}"
    ]  # fmt: skip


# `apptainer inspect --labels --json` as documented (Apptainer 1.x user guide, "inspect").
INSPECT = {
    "data": {
        "attributes": {
            "labels": {
                "org.label-schema.build-arch": "amd64",
                "org.label-schema.schema-version": "1.0",
            }
        }
    },
    "type": "container",
}


def test_labels_carried_over_give_back_the_spec():
    spec = default_registry().get("peak_find")
    doc = json.loads(json.dumps(INSPECT))
    doc["data"]["attributes"]["labels"].update(spec_to_labels(spec))
    labels = parse_labels(json.dumps(doc))
    assert labels_to_spec(labels).to_dict() == spec.to_dict()


def test_catalog_finds_sif_files_by_name_and_version(tmp_path):
    (tmp_path / "crop2d_1.0.0.sif").write_bytes(b"")
    (tmp_path / "crop2d_1.1.0.sif").write_bytes(b"")
    catalog = SifCatalog(tmp_path, apptainer=TRUE)
    assert catalog.path("oremda/crop2d:1.0.0") == tmp_path / "crop2d_1.0.0.sif"
    assert catalog.path("oremda/crop2d").name.startswith("crop2d_")
    assert catalog.path("oremda/fft2d") is None and catalog.lookup("oremda/fft2d") is None


def test_registry_images_are_pulled_into_the_sif_folder(tmp_path):
    # A stand-in that records its arguments and creates the SIF it is asked for.
    fake = tmp_path / "apptainer"
    fake.write_text(
        '#!/bin/sh\necho "$@" >> "$(dirname "$0")/calls"\n'
        'for a; do target=$prev; prev=$a; done\n[ "$1" = pull ] && : > "$target"\nexit 0\n'
    )
    fake.chmod(0o755)
    ref = "127.0.0.1:5000/lab/relay@sha256:" + "c" * 64
    messages = []
    with Arena.create() as arena:
        rt = ApptainerRuntime(arena, apptainer=str(fake), sif_dir=tmp_path / "sif", data_dir=tmp_path)
        try:
            sif = rt.pull(ref, messages.append)
        finally:
            rt.stop()
    assert sif == sif_for_reference(ref, tmp_path / "sif") and sif.exists()
    pulls = [line for line in (tmp_path / "calls").read_text().splitlines() if line.startswith("pull")]
    assert pulls == [f"pull --nohttps --force {sif} docker://{ref}"]
    assert messages[0] == f"pulling {ref}" and messages[-1].startswith(f"pulled {ref}")
    assert SifCatalog(tmp_path / "sif", apptainer=TRUE).path(ref) == sif
    assert SifCatalog(tmp_path / "sif", apptainer=TRUE).path(ref.replace("c", "d")) is None


def test_catalog_lists_every_operator_sif(tmp_path):
    # A stand-in whose `inspect` prints the SIF file itself: here, inspect JSON.
    fake = tmp_path / "apptainer"
    fake.write_text('#!/bin/sh\n[ "$1" = inspect ] || exit 0\nfor a; do last=$a; done\ncat "$last"\n')
    fake.chmod(0o755)
    sifs = tmp_path / "sif"
    sifs.mkdir()
    blur = default_registry().get("gaussian_blur")
    relay_ref = "127.0.0.1:5000/lab/relay:1.0.0"
    for path, labels in (
        (sif_path(blur, folder=sifs), spec_to_labels(blur)),
        (sif_for_reference(relay_ref, sifs), {**spec_to_labels(blur), "oremda.name": "relay"}),
        (sifs / "unrelated.sif", {"org.label-schema.schema-version": "1.0"}),
    ):
        doc = json.loads(json.dumps(INSPECT))
        doc["data"]["attributes"]["labels"].update(labels)
        path.write_text(json.dumps(doc))
    catalog = SifCatalog(sifs, apptainer=str(fake))
    assert [s.name for s in catalog.all()] == ["gaussian_blur", "relay"]
    assert catalog.lookup(relay_ref).image == relay_ref
    names = [s.name for s in Registry([FAULT_OPERATORS], builtin=False, catalogs=[catalog]).all()]
    assert names == ["fault", "gaussian_blur", "relay"]


def test_missing_sif_says_how_to_build(runtime):
    failures = runtime.start([default_registry().get("crop2d")])
    assert "oremda-lab build --engine apptainer crop2d" in failures["crop2d"].message


def test_instance_listing_is_parsed():
    listing = {"instances": [{"instance": "oremda-1-a", "pid": 5, "img": "/a.sif"}, {"instance": "web", "pid": 6}]}
    assert parse_instance_list(json.dumps(listing)) == ["oremda-1-a", "web"]
    assert parse_instance_list("") == []


# -- a real engine ------------------------------------------------------------------------

real = pytest.mark.skipif(shutil.which("apptainer") is None, reason="apptainer is not installed here")


@pytest.mark.apptainer
@real
class TestApptainerRuntime(RuntimeContract):
    runtime = "apptainer"
    options = {"start_timeout": 120}

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def sifs(cls, tmp_path_factory):
        from oremda_lab.images.build import ImageBuilder
        from oremda_lab.runtime.apptainer import build_sif
        from oremda_lab.runtime.docker import connect

        folder = tmp_path_factory.mktemp("sif")
        registry = Registry([FAULT_OPERATORS])
        ImageBuilder(connect(), registry=registry, log=lambda m: None).build(["fault"])
        build_sif(registry.get("fault"), folder)
        cls.options = {**cls.options, "sif_dir": folder}
        return folder

    def test_labels_are_carried_into_the_sif(self, sifs):
        spec = Registry([FAULT_OPERATORS]).get("fault")
        assert SifCatalog(sifs).lookup("oremda/fault").to_dict() == spec.to_dict()

    def test_no_instance_outlives_the_engine(self, engine):
        from oremda_lab.testing import fault_pipeline

        assert engine.run(fault_pipeline({})).ok
        engine.close()
        listing = subprocess.run(["apptainer", "instance", "list", "--json"], capture_output=True, text=True).stdout
        assert not [n for n in parse_instance_list(listing) if n.startswith("oremda-")]
