import numpy as np
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from oremda_lab import Engine
from oremda_lab.displays.notebook import LiveDisplays
from oremda_lab.registry import Registry
from oremda_lab.testing import FAULT_OPERATORS, gated_displays


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


def test_each_display_shows_as_soon_as_its_producers_are_done(tmp_path, monkeypatch):
    # The slow branch waits for a gate that opens only when a figure is published:
    # the fast display must be shown within the run, before the slow branch is done.
    shell = InteractiveShell.instance()
    pipeline = gated_displays(seconds=60)  # fails after a minute if no figure comes first
    live = LiveDisplays()
    order = []
    with Engine("inline", tmp_path, registry=Registry([FAULT_OPERATORS])) as engine, capture_output() as shown:
        engine.subscribe(lambda event: order.append((event.node, event.state)))
        publish = shell.display_pub.publish

        def published(*args, **kwargs):
            publish(*args, **kwargs)
            order.append(("figure", shown.outputs[-1].transient["display_id"]))
            (tmp_path / "gate").touch()

        monkeypatch.setattr(shell.display_pub, "publish", published)
        run = live.run(engine, pipeline)
        assert run.ok, run.errors
        fast, slow = (("figure", live.handles[node].display_id) for node in ("fast", "slow"))
        assert order.index(fast) < order.index(("s", "done")) < order.index(("slow", "done")) < order.index(slow)
        assert len(shown.outputs) == 2  # the run's end draws neither again
        # What the run showed is what the finished run shows (one drawing code path).
        with capture_output() as again:
            LiveDisplays().update(run)
        np.testing.assert_array_equal(run.displays["fast"][0].data, np.ones((2, 4)))
    assert [o.data["image/png"] for o in again.outputs] == [o.data["image/png"] for o in shown.outputs]
