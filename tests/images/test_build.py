"""Operator images: what goes into them, and (with a Docker engine) one real image per operator.

The ``docker`` tests build every operator in the library (base and dependency layers
are cached) and check, for each image: its labels give back the operator's
description, its entry point imports inside the image under the hardened settings,
the Python packages in it are exactly its resolved lock, and images with equal locks
share every layer but their own.
"""

import ast
import importlib.metadata
import io
import json
import os
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from oremda_lab import cli
from oremda_lab.images import build
from oremda_lab.images.build import ImageBuilder, write_context
from oremda_lab.registry import Registry, default_registry
from oremda_lab.runtime import RuntimeUnavailable
from oremda_lab.runtime.docker import SOURCE_DIGEST_LABEL, ImageCatalog, connect, image_ref
from oremda_lab.spec.operator import OperatorSpec
from oremda_lab.testing import FAULT_OPERATORS


def pins(lines) -> dict[str, str]:
    """``name==version`` lines as {canonical name: version}."""
    found = {}
    for line in lines:
        req = Requirement(line)
        (spec,) = req.specifier
        found[canonicalize_name(req.name)] = spec.version
    return found


def test_each_operator_is_locked_with_its_own_requirements():
    builder = ImageBuilder(client=None)
    for spec in default_registry().all():
        locked = pins(builder.lock(spec).lines)
        assert {"numpy", "pyarrow"} <= set(locked), spec.name
        for raw in spec.requirements:
            req = Requirement(raw)
            assert req.specifier.contains(locked[canonicalize_name(req.name)], prereleases=True), (spec.name, raw)


def imported_modules(folder: str) -> set[str]:
    """Top-level modules an operator folder's code imports (anywhere, lazily too)."""
    found = set()
    for path in Path(folder).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"oremda_lab"}


def test_operators_require_what_they_import():
    # Each image holds only its own lock, so an undeclared import fails only there.
    distributions = importlib.metadata.packages_distributions()
    for spec in default_registry().all():
        declared = {canonicalize_name(Requirement(r).name) for r in spec.requirements} | {"numpy", "pyarrow"}
        for module in imported_modules(spec.path):
            names = {canonicalize_name(d) for d in distributions.get(module, [module])}
            assert names & declared, f"{spec.name} imports {module} but does not list it in requirements"


def test_conflicting_requirements_get_their_own_numpy():
    builder = ImageBuilder(client=None)
    old = pins(builder.lock(OperatorSpec("old", requirements=("numpy<2",))).lines)["numpy"]
    new = pins(builder.lock(OperatorSpec("new", requirements=("numpy>=2",))).lines)["numpy"]
    assert Version(old) < Version("2") <= Version(new)


def test_a_python_the_base_lacks_is_refused():
    builder = ImageBuilder(client=None)
    with pytest.raises(ValueError, match=r"old asks for Python 3\.12, but operator images run Debian bookworm's"):
        builder.lock(OperatorSpec("old", python="3.12"))
    for python in ("3.11", ">=3.10"):
        assert builder.lock(OperatorSpec("fine", python=python)).lines


def test_context_depends_only_on_names_contents_and_modes(tmp_path):
    archives = []
    for i, folder in enumerate([tmp_path / "a", tmp_path / "b"]):
        (folder / "pkg").mkdir(parents=True)
        (folder / "pkg" / "mod.py").write_text("x = 1\n")
        (folder / "tool").write_text("#!/bin/sh\n")
        (folder / "tool").chmod(0o700)
        (folder / "pkg" / "__pycache__").mkdir()
        (folder / "pkg" / "__pycache__" / "mod.pyc").write_bytes(b"stale")
        os.utime(folder / "pkg" / "mod.py", (1000 * i, 1000 * i))
        out = io.BytesIO()
        write_context({"Dockerfile": b"FROM x\n", "operator": folder}, out)
        archives.append(out.getvalue())
    assert archives[0] == archives[1]
    with tarfile.open(fileobj=io.BytesIO(archives[0])) as tar:
        modes = {m.name: (m.mode, m.mtime, m.uid) for m in tar.getmembers()}
    assert modes == {
        "Dockerfile": (0o644, 0, 0),
        "operator/pkg": (0o755, 0, 0),
        "operator/pkg/mod.py": (0o644, 0, 0),
        "operator/tool": (0o755, 0, 0),
    }


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
def test_every_operator_imports_in_its_hardened_image_with_exactly_its_lock(built):
    client, images = built
    probe = (
        "import json, os, importlib.metadata as m; from oremda_lab.worker.main import load_operator; "
        "spec, func = load_operator('/opt/oremda/operator'); "
        "packages = {d.metadata['Name']: d.version for d in m.distributions()}; "
        "print(json.dumps([spec.name, os.getuid(), os.getgid(), packages]))"
    )

    def check(spec):
        out = client.containers.run(
            images[spec.name], ["python3", "-c", probe], remove=True, user="1001:1001", read_only=True,
            network_mode="none", cap_drop=["ALL"], security_opt=["no-new-privileges"], tmpfs={"/tmp": "size=64m"},
        )  # fmt: skip
        name, uid, gid, packages = json.loads(out)
        return [name, uid, gid, {canonicalize_name(k): v for k, v in packages.items()}]

    specs = default_registry().all()
    builder = ImageBuilder(client, log=lambda m: None)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(check, specs))
    assert results == [[spec.name, 1001, 1001, pins(builder.lock(spec).lines)] for spec in specs]


@pytest.mark.docker
def test_equal_locks_share_every_layer_but_the_operators(built):
    client, images = built
    builder = ImageBuilder(client, log=lambda m: None)
    layers, cores = {}, {}
    for spec in default_registry().all():
        lines = builder.lock(spec).lines
        layers.setdefault(lines, set()).add(tuple(client.images.get(images[spec.name]).attrs["RootFS"]["Layers"]))
        cores[lines] = tuple(line for line in lines if line.split("==")[0] in ("numpy", "pyarrow"))
    below = {lines: {stack[:-1] for stack in stacks} for lines, stacks in layers.items()}
    assert all(len(shared) == 1 for shared in below.values())  # same lock: all but the last layer shared
    assert len({stack for shared in below.values() for stack in shared}) == len(below)  # else: a layer differs
    stacks = {lines: next(iter(shared)) for lines, shared in below.items()}
    for lines, stack in stacks.items():  # base + the numpy/pyarrow layer, shared wherever they are pinned alike
        for other, other_stack in stacks.items():
            assert (stack[:2] == other_stack[:2]) == (cores[lines] == cores[other])


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


@pytest.mark.podman
def test_transfer_copies_an_image_once_and_keeps_its_id(capsys):
    try:
        docker, podman = connect(engine="docker"), connect(engine="podman")
    except RuntimeUnavailable as e:
        if os.environ.get("OREMDA_REQUIRE_ENGINES"):
            pytest.fail(str(e))
        pytest.skip(str(e))
    registry = Registry([FAULT_OPERATORS])
    built = ImageBuilder(docker, registry=registry, log=lambda m: None).build(["fault"])
    spec = registry.get("fault")
    logs = []
    for _ in range(2):
        build.transfer(docker, podman, [spec], log=logs.append)
    assert podman.images.get(image_ref("fault", spec.version, "localhost/")).id == built["fault"]
    assert logs[-1] == "the target has every image already"
    assert cli.main(["labels", "oremda/fault", "--engine", "podman"]) == 0  # read through Podman's API
    assert capsys.readouterr().out.startswith(f"fault {spec.version}: ")
