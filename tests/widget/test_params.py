import dataclasses
import types

import pytest

from oremda_lab import Pipeline, PipelineEditor, PipelineError
from oremda_lab.registry import Registry, default_registry
from oremda_lab.spec.operator import ParamSpec
from oremda_lab.widget.params import control_for, operator_info, param_widget, slider_position

KINDS = {"slider", "dropdown", "checkbox", "number", "text", "json"}


@pytest.mark.parametrize(
    ("param", "kind"),
    [
        (ParamSpec("sigma", "number", default=2.0, min=0, max=50, step=0.1, unit="px"), "slider"),
        (ParamSpec("n", "integer", min=1, max=9), "slider"),
        (ParamSpec("threshold", "number", min=0), "number"),
        (ParamSpec("normalize", "enum", choices=("linear", "log")), "dropdown"),
        (ParamSpec("cache", "bool", default=True), "checkbox"),
        (ParamSpec("bounds", "array"), "json"),
        (ParamSpec("filename", "string"), "text"),
    ],
)
def test_control_kind_follows_the_schema(param, kind):
    assert control_for(param)["kind"] == kind


def test_slider_carries_bounds_unit_and_step():
    c = control_for(ParamSpec("sigma", "number", default=2.0, min=0, max=50, step=0.1, unit="px", per_axis=True))
    assert c == {
        "name": "sigma", "kind": "slider", "min": 0, "max": 50, "step": 0.1, "unit": "px", "default": 2.0,
        "per_axis": True, "description": "",
    }  # fmt: skip
    assert control_for(ParamSpec("n", "integer", min=0, max=10))["step"] == 1
    assert control_for(ParamSpec("x", "number", min=0, max=10))["step"] == pytest.approx(0.1)


def test_every_shipped_operator_gets_a_panel():
    for spec in default_registry().all():
        info = operator_info(spec)
        assert info["image"] == f"oremda/{spec.name}"
        assert [c["name"] for c in info["controls"]] == list(spec.params)
        for c in info["controls"]:
            assert c["kind"] in KINDS
            if c["kind"] == "slider":
                assert c["min"] < c["max"] and c["step"] > 0
            if c["kind"] == "dropdown":
                assert c.get("default", c["choices"][0]) in c["choices"]


def test_blur_panel_is_a_sigma_slider_in_pixels():
    info = operator_info(default_registry().get("gaussian_blur"))
    sigma = next(c for c in info["controls"] if c["name"] == "sigma")
    assert (sigma["kind"], sigma["unit"], sigma["min"], sigma["max"]) == ("slider", "px", 0, 50)


def blur_pipeline():
    node = {"id": "b", "image": "oremda/gaussian_blur", "params": {"sigma": 3}}
    return Pipeline.from_json({"nodes": [node], "edges": []})


def test_param_widget_binds_both_ways_and_clamps():
    p = blur_pipeline()
    s = param_widget(p, "b", "sigma")
    assert (s.value, s.min, s.max) == (3, 0, 50)
    assert "(px)" in s.description
    s.value = 7.5
    assert p.nodes["b"].params["sigma"] == 7.5
    p.set_param("b", "sigma", 1.25)
    assert s.value == 1.25
    rev = p.revision
    s.value = 1.25  # no change, no edit
    assert p.revision == rev
    p.set_param("b", "sigma", 1.9)
    rev = p.revision
    s.value = 19 * 0.1  # the browser's slider echoes 1.9 from its step: 1.9000000000000001, not an edit
    assert p.revision == rev and p.nodes["b"].params["sigma"] == 1.9
    s.value = 2.0  # one step is an edit
    assert p.revision == rev + 1 and p.nodes["b"].params["sigma"] == 2.0


# Values the browser's FloatSlider (ipywidgets 8, 0..50 by 0.1) sent back when the kernel set
# sigma 1.5, 1.6, ..., 5.4 in JupyterLab: every other value came back unchanged.
SENT_BACK = {1.7: 1.7000000000000002, 2.3: 2.3000000000000003, 2.4: 2.4000000000000004, 2.9: 2.9000000000000004,
             3.4: 3.4000000000000004, 3.9: 3.9000000000000004, 4.1: 4.1000000000000005, 4.6: 4.6000000000000005,
             4.8: 4.800000000000001, 5.1: 5.1000000000000005, 5.3: 5.300000000000001}  # fmt: skip


def test_a_float_slider_shows_a_value_where_the_browser_puts_it():
    values = [round(1.5 + 0.1 * k, 10) for k in range(40)]
    assert {v: slider_position(v, 0, 50, 0.1) for v in values if slider_position(v, 0, 50, 0.1) != v} == SENT_BACK
    assert all(slider_position(x, 0, 50, 0.1) == x for x in SENT_BACK.values())  # nothing more to send back
    p = blur_pipeline()
    s = param_widget(p, "b", "sigma")
    p.set_param("b", "sigma", 1.7)
    assert s.value == 1.7000000000000002 and p.nodes["b"].params["sigma"] == 1.7  # the parameter as it was set
    rev = p.revision
    s.value = 1.7000000000000002  # what the browser would have sent back: not an edit
    assert p.revision == rev
    p.set_param("b", "sigma", 1.25)  # between steps: shown as it is
    assert s.value == 1.25
    assert slider_position(-3.3, -5, 5, 0.1) == slider_position(slider_position(-3.3, -5, 5, 0.1), -5, 5, 0.1)
    assert (slider_position(60, 0, 50, 0.1), slider_position(-1, 0, 50, 0.1)) == (50, 0)


def test_param_widget_dropdown_and_unknown_param():
    p = Pipeline.from_json({"nodes": [{"id": "pic", "image": "oremda/picture"}], "edges": []})
    d = param_widget(p, "pic", "normalize")
    assert list(d.options) == ["linear", "log"] and d.value == "linear"
    d.value = "log"
    assert p.nodes["pic"].params["normalize"] == "log"
    with pytest.raises(PipelineError):
        param_widget(p, "pic", "nope")


def test_param_slider_submits_on_every_move():
    from oremda_lab.widget import param_slider

    class Engine:
        def __init__(self):
            self.seen = []

        def submit(self, pipeline):
            self.seen.append(pipeline.nodes["b"].params["sigma"])
            return f"future{len(self.seen)}"

    p, engine = blur_pipeline(), Engine()
    s = param_slider(p, engine, "b", "sigma")
    assert s.latest_run is None
    s.value = 4.0
    s.value = 5.0
    assert engine.seen == [4.0, 5.0] and s.latest_run == "future2"


def test_the_palette_offers_the_engine_s_operator_images(comm):
    ref = "127.0.0.1:5000/lab/relay@sha256:" + "a" * 64
    relay = dataclasses.replace(default_registry().get("gaussian_blur"), name="relay", path=None, image=ref)

    class Images:  # an engine's image catalog, in memory
        def lookup(self, image):
            return relay if image == ref else None

        def all(self):
            return [relay]

    engine = types.SimpleNamespace(registry=Registry(catalogs=[Images()]))  # what PipelineEditor asks of it
    editor = PipelineEditor(None, engine, auto_run=False, comm=comm)
    try:
        entry = next(o for o in editor.operators if o["name"] == "relay")
        assert entry["image"] == ref
        assert editor.pipeline.add_node(entry["image"], id="r").image == ref  # validation knows it too
    finally:
        editor.close()
