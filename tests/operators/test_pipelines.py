"""The example pipelines in pipelines/ run end to end on real data (inline runtime)."""

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from oremda_lab.engine import Engine
from oremda_lab.registry import default_registry
from oremda_lab.spec.pipeline import Pipeline

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"


@pytest.mark.parametrize("name", ["eels_background.json", "blur_display.json", "lattice_analysis.json"])
def test_pipeline_is_valid_and_versioned(name):
    pipeline = Pipeline.load(PIPELINES / name, catalog=default_registry())
    assert pipeline.validate() == []
    assert pipeline.to_json()["version"] == 1
    assert all(node.position for node in pipeline.nodes.values())


def _run(pipeline, data_dir, runtime="inline"):
    with Engine(runtime, data_dir=data_dir) as engine:
        run = engine.run(pipeline, timeout=300)
        run.raise_for_errors()
        assert run.ok
        # Copy out what the checks need before shared memory closes.
        outputs = {n: {p: (np.array(v.data) if isinstance(v.data, np.ndarray) else v.data, v.meta)
                       for p, v in run.outputs[n].items()} for n in run.nodes}  # fmt: skip
        displays = {d: len(layers) for d, layers in run.displays.items()}
    return outputs, displays


@pytest.mark.parametrize("runtime", ["inline", "local"])
def test_eels_background(data_folder, runtime):
    outputs, displays = _run(Pipeline.load(PIPELINES / "eels_background.json"), data_folder, runtime)
    assert displays == {"spectrum": 3}
    assert outputs["background"]["background"][1]["r"] == pytest.approx(2.53, abs=0.01)
    e, s = outputs["subtract"]["eloss"][0], outputs["subtract"]["spec"][0]
    assert e[0] == pytest.approx(460) and s[(e > 540) & (e < 560)].mean() > 0


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def lattice_url():
    """URL of data_container's lattice.tif, served on loopback for the test."""
    folder = Path(default_registry().get("data_container").path) / "data"
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/lattice.tif"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_blur_display_from_a_local_http_server(tmp_path, lattice_url):
    pipeline = Pipeline.load(PIPELINES / "blur_display.json")
    pipeline.set_param("fetch", "url", lattice_url)
    outputs, displays = _run(pipeline, tmp_path)
    assert displays == {"raw": 1, "blurred": 1}
    raw, blurred = outputs["reader"]["out"][0], outputs["blur"]["image"][0]
    assert raw.shape == blurred.shape == (256, 256) and blurred.std() < raw.std()


def test_lattice_analysis_on_real_mos2(data_folder):
    outputs, displays = _run(Pipeline.load(PIPELINES / "lattice_analysis.json"), data_folder)
    assert displays == {"view_image": 5, "view_cell": 1, "view_fft": 1, "view_disp": 1, "view_int": 1}
    u, v = outputs["lattice"]["u"][0], outputs["lattice"]["v"][0]
    assert 22 < np.hypot(*u) < 25.5 and 22 < np.hypot(*v) < 25.5
    displacement = outputs["displacement"]["diff"][0]
    assert displacement.shape == outputs["refine"]["peaks"][0].shape
    assert np.median(np.hypot(*displacement.T)) < 1.5
    tiles = outputs["tiles"]["image"][0]
    cell = outputs["cell"]["image"][0]
    assert tiles.shape == (4 * cell.shape[0], 4 * cell.shape[1])


UPSTREAM = Path(__file__).resolve().parents[1] / "upstream_pipelines"


def test_upstream_pipeline_2d_runs_with_only_the_url_changed(tmp_path, lattice_url):
    pipeline = Pipeline.load(UPSTREAM / "pipeline_2d.json")
    pipeline.set_params("9", {"url": lattice_url, "cache": False})
    _, displays = _run(pipeline, tmp_path)
    assert displays == {"30": 1, "31": 1}


def test_upstream_pipeline_1d_runs_with_the_file_and_its_energy_window_changed(data_folder):
    # Upstream's window (268-277 eV, carbon K) lies below this spectrum's 360 eV start,
    # so the window is data, like the file name.
    pipeline = Pipeline.load(UPSTREAM / "pipeline_1d.json")
    pipeline.set_params("10", {"filename": "coreloss_spectrum.msa"})
    pipeline.set_params("11", {"start": 460, "stop": 520})
    pipeline.set_params("12", {"start": 460, "stop": 770})
    _, displays = _run(pipeline, data_folder)
    assert displays == {"30": 3}
