"""Operator images: what goes into them, and (with a Docker engine) one real image per operator.

The ``docker`` tests build every operator in the library (the base is cached) and check,
for each image: its labels give back the operator's description, and its entry point
imports inside the image under the hardened settings (so its requirements are there).
"""

import os
import tarfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from oremda_lab.images import build
from oremda_lab.images.build import ImageBuilder
from oremda_lab.registry import default_registry
from oremda_lab.runtime import RuntimeUnavailable
from oremda_lab.runtime.docker import SOURCE_DIGEST_LABEL, ImageCatalog, connect, image_ref


def test_operator_requirements_reach_the_base():
    builder = ImageBuilder(client=None)
    reqs = " ".join(builder.requirements())
    for spec in default_registry().all():
        for req in spec.requirements:
            assert req in reqs, f"{spec.name} needs {req}"
    assert "numpy==" in reqs and "pyarrow==" in reqs


def test_build_without_engine_fails_clearly(monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert build.main(["gaussian_blur"]) == 2
    assert "no docker engine answers" in capsys.readouterr().err


@pytest.fixture(scope="module")
def built():
    try:
        client = connect()
    except RuntimeUnavailable as e:
        if os.environ.get("OREMDA_REQUIRE_ENGINES"):
            pytest.fail(str(e))
        pytest.skip(str(e))
    return client, ImageBuilder(client, log=lambda m: None).build()


@pytest.mark.docker
def test_every_operator_has_an_image_with_its_labels(built):
    client, images = built
    catalog = ImageCatalog(client)
    for spec in default_registry().all():
        assert spec.name in images
        image = client.images.get(image_ref(spec.name, spec.version))
        assert image.id == images[spec.name]
        assert image.labels[SOURCE_DIGEST_LABEL] == spec.digest
        assert catalog.lookup(f"oremda/{spec.name}").to_dict() == spec.to_dict()
        assert catalog.lookup(f"oremda/{spec.name}:{spec.version}").name == spec.name


@pytest.mark.docker
def test_every_operator_imports_in_its_hardened_image(built):
    client, images = built
    probe = (
        "import os; from oremda_lab.worker.main import load_operator; "
        "spec, func = load_operator('/opt/oremda/operator'); print(spec.name, os.getuid(), os.getgid())"
    )

    def check(spec):
        out = client.containers.run(
            images[spec.name], ["python3", "-c", probe], remove=True, user="1001:1001", read_only=True,
            network_mode="none", cap_drop=["ALL"], security_opt=["no-new-privileges"], tmpfs={"/tmp": "size=64m"},
        )  # fmt: skip
        return out.decode().split()

    specs = default_registry().all()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(check, specs))
    assert results == [[spec.name, "1001", "1001"] for spec in specs]


@pytest.mark.parametrize("engine", [pytest.param("docker", marks=pytest.mark.docker),
                                    pytest.param("podman", marks=pytest.mark.podman)])  # fmt: skip
def test_import_gets_exactly_the_asked_tag(engine, tmp_path):
    try:
        client = connect(engine=engine)
    except RuntimeUnavailable as e:
        if os.environ.get("OREMDA_REQUIRE_ENGINES"):
            pytest.fail(str(e))
        pytest.skip(str(e))
    tarball = tmp_path / "tiny.tar"
    (tmp_path / "hello.txt").write_text("hi")
    with tarfile.open(tarball, "w") as tar:
        tar.add(tmp_path / "hello.txt", arcname="hello.txt")
    builder = ImageBuilder(client, engine=engine, log=lambda m: None)
    repo = f"{builder.prefix}oremda-lab/import-test"
    try:
        assert builder.import_rootfs(tarball, f"{repo}:abc") == f"{repo}:abc"
        image = client.images.get(f"{repo}:abc")
        assert image.tags == [f"{repo}:abc"]
        assert image.labels.get("oremda-lab.rootfs") == "tiny.tar"
    finally:
        client.images.remove(f"{repo}:abc", force=True)
