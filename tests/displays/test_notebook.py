import numpy as np
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from oremda_lab import Engine
from oremda_lab.displays.notebook import LiveDisplays
from oremda_lab.registry import Registry
from oremda_lab.testing import FAULT_OPERATORS


def test_figures_update_in_place(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", np.random.default_rng(0).random((32, 32), dtype=np.float32))
    from oremda_lab import Pipeline

    pipeline = Pipeline.from_json(
        {
            "nodes": [
                {"id": "src", "image": "oremda/tiff_reader", "params": {"filename": "a.tif"}},
                {"id": "pic", "image": "oremda/picture"},
                {"id": "view", "type": "display", "display": "2D"},
            ],
            "edges": [
                {"type": "data", "from": {"id": "src", "port": "out"}, "to": {"id": "pic", "port": "in"}},
                {"type": "display", "from": {"id": "pic", "port": "out"}, "to": {"id": "view", "port": "in"}},
            ],
        }
    )
    InteractiveShell.instance()  # a real IPython shell publishes the displays
    live = LiveDisplays()
    with Engine("inline", tmp_path, registry=Registry([FAULT_OPERATORS])) as engine, capture_output() as shown:
        live.update(engine.run(pipeline))
        pipeline.set_param("pic", "normalize", "log")
        live.update(engine.run(pipeline))
    first, second = shown.outputs
    assert not first.update and second.update  # the second replaces the first...
    assert first.transient["display_id"] == second.transient["display_id"]  # ...in the same output
    assert first.data["image/png"] != second.data["image/png"]
