"""pipelines/mixed_stacks.json: three mutually incompatible stacks in one pipeline.

py4DSTEM 0.14.18 pins numpy<2 and scikit-learn<1.5; hyperspy[learning] needs
scikit-learn>=1.6 and gets numpy 2, as does LiberTEM 0.16. No single environment
holds them all; the run's provenance records, per node, the packages that worker's own
interpreter imported (its HELLO), which is what these tests read. The results are
checked against truths computed in the test process: a numpy truncated SVD followed by
an explicit py4DSTEM-convention mask sum, and this library's virtual_detector.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from packaging.version import Version
from test_4dstem import DETECTOR, mos2_4dstem
from test_hyperspy_decomposition import truncated
from test_py4dstem_virtual_image import strict_mask

from oremda_lab.engine import Engine
from oremda_lab.registry import default_registry
from oremda_lab.spec.pipeline import Pipeline
from oremda_lab.testing import run_operator

PIPELINE = Path(__file__).resolve().parents[2] / "pipelines" / "mixed_stacks.json"
OPERATORS = ["npy_reader", "hyperspy_decomposition", "py4dstem_virtual_image", "libertem_ring",
             "py4dstem_bragg_disks", "picture"]  # fmt: skip
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory):
    """The scan as the pipeline names it, in a folder a container's user can read."""
    folder = tmp_path_factory.mktemp("mixed")
    folder.chmod(0o755)
    np.save(folder / "mos2_4dstem.npy", mos2_4dstem()[0])
    (folder / "mos2_4dstem.npy").chmod(0o644)
    return folder


def run_pipeline(runtime: str, data_folder: Path) -> tuple[dict, dict]:
    """Outputs (copied) and per-node provenance of the example pipeline on ``runtime``."""
    with Engine(runtime, data_folder, start_timeout=1500) as engine:
        run = engine.run(Pipeline.load(PIPELINE), timeout=1500)
        run.raise_for_errors()
        assert {d: len(layers) for d, layers in run.displays.items()} == {"view_adf": 1, "view_ring": 1, "view_bvm": 1}
        # A lazy 4D reference has no array in the session (data None): its meta describes it.
        outputs = {
            (n, p): (None if v.data is None else np.array(v.data), v.meta)
            for n in run.outputs
            for p, v in run.outputs[n].items()
        }
        return outputs, run.record()["provenance"]["nodes"]


@pytest.fixture(scope="module")
def local(data_folder):
    return run_pipeline("local", data_folder)


def test_pipeline_is_valid():
    pipeline = Pipeline.load(PIPELINE, catalog=default_registry())
    assert pipeline.validate() == []
    assert all(node.position for node in pipeline.nodes.values())


def test_each_worker_runs_its_own_stack(local):
    _, nodes = local
    packages = {node: nodes[node]["environment"]["packages"] for node in ("adf", "bragg", "denoise", "ring")}
    for node in ("adf", "bragg"):
        assert packages[node]["py4dstem"] == "0.14.18"
        assert Version(packages[node]["numpy"]) < Version("2")
        assert Version(packages[node]["scikit-learn"]) < Version("1.5")
        assert "hyperspy" not in packages[node] and "libertem" not in packages[node]
    assert Version(packages["denoise"]["hyperspy"]) >= Version("2.1")
    assert Version(packages["denoise"]["scikit-learn"]) >= Version("1.6")
    assert Version(packages["ring"]["libertem"]).release[:2] == (0, 16)
    for node in ("denoise", "ring"):
        assert Version(packages[node]["numpy"]) >= Version("2") and "py4dstem" not in packages[node]
    ids = {node: nodes[node]["environment"]["id"] for node in nodes}
    assert ids["adf"] == ids["bragg"]  # one requirement set, one environment
    assert len({ids["adf"], ids["denoise"], ids["ring"]}) == 3
    assert ids["read"] == ids["pic_adf"] == "kernel"  # numpy and pyarrow only: the kernel's own


def test_results_equal_numpy_truths(local):
    outputs, _ = local
    data = mos2_4dstem()[0]
    denoised = truncated(data.reshape(256, -1), 8, poisson=True).reshape(data.shape)
    np.testing.assert_allclose(outputs["denoise", "data"][0], denoised, rtol=1e-6, atol=1e-6 * denoised.max())
    adf = np.einsum("abij,ij->ab", denoised, strict_mask((DETECTOR, DETECTOR), 6, 20, (32, 32)))
    np.testing.assert_allclose(outputs["adf", "image"][0], adf, rtol=1e-6)
    ring = run_operator("virtual_detector", {"data": data}, {"inner_radius": 6, "outer_radius": 20})["image"]
    np.testing.assert_allclose(outputs["ring", "image"][0], ring.data, rtol=1e-5)
    assert outputs["bragg", "bvm"][0].shape == (DETECTOR, DETECTOR)


class ContainerStacks:
    """The same pipeline in containers (each operator its own image layers) equals local."""

    engine_name = "docker"

    @pytest.fixture(scope="class")
    @classmethod
    def images(cls):
        from oremda_lab.images.build import ImageBuilder, transfer
        from oremda_lab.runtime import RuntimeUnavailable
        from oremda_lab.runtime.docker import connect

        try:
            client = connect(engine=cls.engine_name)
            docker = connect(engine="docker") if cls.engine_name == "podman" else client
        except RuntimeUnavailable as e:
            if os.environ.get("OREMDA_REQUIRE_ENGINES"):
                pytest.fail(str(e))
            pytest.skip(str(e))
        built = ImageBuilder(docker, log=lambda m: None).build(OPERATORS)
        if docker is not client:  # Podman's builder is slow: build in Docker, copy over (as test_docker)
            transfer(docker, client, [default_registry().get(n) for n in built], log=lambda m: None)
        return client

    def test_equals_local(self, images, local, data_folder):
        outputs, nodes = run_pipeline(self.engine_name, data_folder)
        local_outputs, local_nodes = local
        assert outputs.keys() == local_outputs.keys()
        for key, (data, meta) in local_outputs.items():
            # The images hold the same locked wheels as the venvs: the same numbers.
            if data is None:
                assert outputs[key][0] is None, key
            else:
                np.testing.assert_allclose(outputs[key][0], data, rtol=1e-12, atol=0, err_msg=str(key))
            assert json.dumps(outputs[key][1], sort_keys=True) == json.dumps(meta, sort_keys=True), key
        for node in ("adf", "denoise", "ring"):
            environment = nodes[node]["environment"]
            assert environment["id"].startswith("image:")
            for package in ("numpy", "py4dstem", "hyperspy", "libertem", "scikit-learn"):
                assert environment["packages"].get(package) == local_nodes[node]["environment"]["packages"].get(
                    package
                ), (node, package)


@pytest.mark.docker
class TestDockerStacks(ContainerStacks):
    engine_name = "docker"


@pytest.mark.podman
class TestPodmanStacks(ContainerStacks):
    engine_name = "podman"
