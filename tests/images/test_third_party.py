"""The third-party image contract (docs/third_party_images.md), end to end on Docker.

``templates/third_party/Dockerfile`` is built with a plain ``docker build`` (the CLI,
classic builder) on a stand-in for "any base with python3, numpy and pyarrow": the
project's Debian base with a resolved numpy, pyarrow and pip, no worker code. The SDK
goes in as this package's wheel with ``pip install --no-deps``. Then ``oremda-lab
labels`` must accept the image, and the Docker runtime must run it as an operator that
exists only as an image, next to one from a folder.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from oremda_lab import __version__, cli
from oremda_lab.engine import Engine
from oremda_lab.images import rootfs
from oremda_lab.images.build import ImageBuilder
from oremda_lab.registry import Registry
from oremda_lab.runtime import RuntimeUnavailable
from oremda_lab.runtime.docker import connect
from oremda_lab.runtime.environments import lock
from oremda_lab.spec.labels import spec_to_labels
from oremda_lab.spec.operator import OperatorSpec
from oremda_lab.spec.pipeline import Pipeline
from oremda_lab.testing import FAULT_OPERATORS

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "templates" / "third_party"
TAG = "example.org/lab/scale:1.0.0"
SIZE = 5


def docker_build(context: Path, tag: str, *args: str) -> subprocess.CompletedProcess:
    """``docker build`` with the CLI's classic builder (no BuildKit), as a user would run it."""
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    return subprocess.run(
        ["docker", "build", "-q", *args, "-t", tag, str(context)], env=env, capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def client():
    try:
        return connect()
    except RuntimeUnavailable as e:
        if os.environ.get("OREMDA_REQUIRE_ENGINES"):
            pytest.fail(str(e))
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """This package's wheel, built offline from a copy of the sources (the tree stays clean)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    # The wheel ships the example pipelines and the Jupyter server extension's config file.
    for folder in ("oremda_lab", "operators", "pipelines", "jupyter-config"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheels")
    done = subprocess.run(
        [sys.executable, "-m", "uv", "build", "--quiet", "--wheel", "--out-dir", str(out), str(source)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (found,) = out.glob("oremda_lab-*.whl")
    return found


@pytest.fixture(scope="module")
def image(client, wheel, tmp_path_factory):
    builder = ImageBuilder(client, registry=Registry([FAULT_OPERATORS]), log=lambda m: None)
    builder.build(["fault"])
    base = builder.deps_image(lock(["pip"], rootfs.PYTHON_VERSION))
    context = tmp_path_factory.mktemp("context") / "scale"
    shutil.copytree(TEMPLATE, context)
    (context / "wheels").mkdir()
    shutil.copy(wheel, context / "wheels")
    done = docker_build(context, TAG, "--build-arg", f"BASE={base}")
    assert done.returncode == 0, done.stderr
    yield TAG
    client.images.remove(TAG, force=True)


def template_spec() -> OperatorSpec:
    return OperatorSpec.from_dict(json.loads((TEMPLATE / "operator" / "operator.json").read_text()))


def test_labels_accepts_it_and_prints_what_the_folder_describes(image, client, capsys):
    ours = {k: v for k, v in client.images.get(image).labels.items() if k.startswith("oremda.")}
    assert ours == spec_to_labels(template_spec())  # the Dockerfile's quoting survives docker build
    assert cli.main(["labels", str(TEMPLATE / "operator")]) == 0
    from_folder = capsys.readouterr().out.splitlines()
    assert cli.main(["labels", image]) == 0
    from_image = capsys.readouterr().out.splitlines()
    assert from_image[0] == f"{from_folder[0]} [image {image}]"
    assert from_image[1:] == from_folder[1:]


def test_labels_rejects_a_default_out_of_range(image, client, tmp_path, capsys):
    (tmp_path / "Dockerfile").write_text(f"FROM {image}\nLABEL oremda.params.factor.default=5000\n")
    done = docker_build(tmp_path, "example.org/lab/scale:broken")
    assert done.returncode == 0, done.stderr
    try:
        assert cli.main(["labels", "example.org/lab/scale:broken"]) == 1
        err = capsys.readouterr().err
        assert err == "example.org/lab/scale:broken: oremda.params.factor.default: 5000 is above the maximum 1000\n"
    finally:
        client.images.remove("example.org/lab/scale:broken", force=True)


def test_it_runs_as_an_image_only_operator(image, tmp_path):
    pipeline = {
        "nodes": [
            {"id": "ones", "image": "oremda/fault", "params": {"size": SIZE}},
            {"id": "scaled", "image": image, "params": {"factor": 3}},
        ],
        "edges": [{"type": "data", "from": {"id": "ones", "port": "out"}, "to": {"id": "scaled", "port": "image"}}],
    }
    with Engine("docker", tmp_path, registry=Registry([FAULT_OPERATORS])) as engine:
        run = engine.run(Pipeline.from_json(pipeline))
        assert run.ok, run.errors
        # fault emits SIZE ones; scale multiplies by the factor
        np.testing.assert_array_equal(run.outputs["scaled"]["image"].data, np.full(SIZE, 3.0))
        node = json.loads(json.dumps(run.record(), default=str))["provenance"]["nodes"]["scaled"]
    assert node["operator"] == "scale"
    packages = node["environment"]["packages"]
    assert packages["oremda-lab"] == __version__  # the SDK came from the wheel, with its metadata
    locked = dict(line.split("==") for line in lock(["pip"], rootfs.PYTHON_VERSION).lines)
    assert packages["numpy"] == locked["numpy"]  # and numpy is the base's own
