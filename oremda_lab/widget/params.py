"""Parameter controls chosen from a :class:`ParamSpec`, for the editor panel and notebooks.

One rule (:func:`control_for`) decides how a parameter is edited; the editor's
parameter panel (JS) renders what it says, and :func:`param_widget` builds the same
control as a standard ipywidget bound to a :class:`Pipeline`.

Examples
--------
>>> from oremda_lab.spec.operator import ParamSpec
>>> control_for(ParamSpec("sigma", "number", default=2.0, min=0, max=50, step=0.1, unit="px"))["kind"]
'slider'
>>> control_for(ParamSpec("normalize", "enum", choices=("linear", "log")))["kind"]
'dropdown'
>>> control_for(ParamSpec("threshold", "number"))["kind"]
'number'
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from oremda_lab.spec.operator import OperatorSpec, ParamSpec
from oremda_lab.spec.pipeline import Pipeline, PipelineError

if TYPE_CHECKING:
    import ipywidgets

__all__ = ["control_for", "operator_info", "param_widget", "slider_position"]

#: Slider steps when the schema gives none: integers step by one, numbers by 1/100 of the range.
DEFAULT_SLIDER_STEPS = 100


def control_for(param: ParamSpec) -> dict[str, Any]:
    """The control that edits ``param``: a JSON-ready dict with ``kind`` and its bounds.

    ``kind`` is ``checkbox`` (bool), ``dropdown`` (choices), ``slider`` (a number or
    integer with both bounds), ``number`` (other numbers), ``json`` (arrays, objects)
    or ``text`` (strings).
    """
    c: dict[str, Any] = {"name": param.name, "description": param.description}
    if param.unit:
        c["unit"] = param.unit
    if param.default is not None:
        c["default"] = param.default
    if param.per_axis:
        c["per_axis"] = True
    numeric = param.type in ("number", "integer")
    if param.type == "bool":
        c["kind"] = "checkbox"
    elif param.choices is not None:
        c["kind"] = "dropdown"
        c["choices"] = list(param.choices)
    elif numeric and param.min is not None and param.max is not None:
        c["kind"] = "slider"
        c["min"], c["max"] = param.min, param.max
        c["step"] = param.step or (1 if param.type == "integer" else (param.max - param.min) / DEFAULT_SLIDER_STEPS)
    elif numeric:
        c["kind"] = "number"
    elif param.type in ("array", "object"):
        c["kind"] = "json"
    else:
        c["kind"] = "text"
    if param.type == "integer":
        c["integer"] = True
    return c


def operator_info(spec: OperatorSpec) -> dict[str, Any]:
    """What the palette and the parameter panel need to know about one operator."""
    ports = spec.to_dict()["ports"]
    return {
        "name": spec.name,
        "image": spec.image or f"oremda/{spec.name}",
        "description": spec.description,
        "ports": ports,
        "controls": [control_for(p) for p in spec.params.values()],
    }


def param_widget(pipeline: Pipeline, node: str, name: str, **kwargs: Any) -> ipywidgets.Widget:
    """A standard ipywidget bound both ways to ``pipeline.nodes[node].params[name]``.

    Moving the widget calls :meth:`Pipeline.set_param` (clamped to the schema, so it is
    valid); edits from elsewhere (the editor, code) move the widget. Whoever observes the
    pipeline (a :class:`~oremda_lab.widget.editor.PipelineEditor`, or :func:`param_slider`'s
    engine) re-runs it. ``kwargs`` go to the widget (e.g. ``continuous_update=False``).
    """
    import ipywidgets as w

    spec = pipeline.spec(node)
    if spec is None or name not in spec.params:
        raise PipelineError([_problem(node, name, "no such parameter")])
    param = spec.params[name]
    c = control_for(param)
    label = f"{node}.{name}" + (f" ({param.unit})" if param.unit else "")
    common = {"description": label, "tooltip": param.description, "style": {"description_width": "initial"}}
    common.update(kwargs)

    def current() -> Any:
        value = pipeline.nodes[node].params.get(name, param.default)
        if c["kind"] == "slider" and isinstance(value, (list, tuple)):
            value = value[0]  # a per-axis value shows its first axis
        return value

    kind = c["kind"]
    float_slider = kind == "slider" and param.type != "integer"

    def shown() -> Any:
        # A value on a float slider's steps is shown where the browser's slider puts it (its
        # last bit may differ), so the view has nothing to send back. A value between steps
        # is shown as it is (the browser's slider moves it to a step, as ipywidgets does).
        value = current()
        if float_slider:
            position = slider_position(value, c["min"], c["max"], c["step"])
            return position if _same_number(position, value) else value
        return value

    if kind == "slider":
        cls = w.IntSlider if param.type == "integer" else w.FloatSlider
        widget = cls(value=shown(), min=c["min"], max=c["max"], step=c["step"], **common)
    elif kind == "dropdown":
        widget = w.Dropdown(options=list(param.choices or ()), value=current(), **common)
    elif kind == "checkbox":
        widget = w.Checkbox(value=bool(current()), **common)
    elif kind == "number":
        widget = (w.IntText if param.type == "integer" else w.FloatText)(value=current() or 0, **common)
    else:
        widget = w.Text(value=_as_text(current(), kind), **common)

    syncing = False

    def to_pipeline(change: dict[str, Any]) -> None:
        nonlocal syncing
        if syncing:
            return
        value = param.clamp(change["new"])
        if kind == "json":
            value = json.loads(value)
        if kind == "slider" and _same_number(value, current()):
            # The browser's slider echoes a value the kernel set, re-derived from its step
            # (1.9 comes back as 1.9000000000000001): not an edit, so no second run.
            return
        syncing = True
        try:
            pipeline.set_param(node, name, value)
        finally:
            syncing = False

    def from_pipeline(_: Pipeline) -> None:
        nonlocal syncing
        if syncing or node not in pipeline.nodes:
            return
        value = shown()
        if kind in ("json", "text"):
            value = _as_text(value, kind)
        if widget.value != value:
            syncing = True
            try:
                widget.value = value
            finally:
                syncing = False

    widget.observe(to_pipeline, "value")
    widget._oremda_unobserve = pipeline.observe(from_pipeline)  # kept so callers can unbind
    return widget


def slider_position(value: float, low: float, high: float, step: float) -> float:
    """Where an ipywidgets FloatSlider's view puts ``value``: noUiSlider's step arithmetic.

    The view snaps a value that the kernel sets to its step, in percent of the range, and
    converts it back; when the result differs in the last bit (1.7 becomes
    1.7000000000000002 on 0..50 by 0.1) the view sends it back to the kernel, a comm
    message with the kernel's busy and idle for nothing. A value already snapped comes
    back unchanged. These are the operations of the noUiSlider that ipywidgets 8.1 ships, in the
    same order, in the same IEEE doubles; if another version snaps differently, the view
    sends its value back as before and :func:`param_widget` ignores it.

    >>> slider_position(1.7, 0, 50, 0.1), slider_position(1.6, 0, 50, 0.1)
    (1.7000000000000002, 1.6)
    """
    if not step or high <= low:
        return value

    def percent(x: float) -> float:  # share of the range, as noUiSlider's toPercentage
        return 100 * x / (high - low)

    if value >= high:
        return high
    at = percent(value - low)  # toStepping (one range: 0..100 %)
    if at != 100:
        step_percent = percent(step)
        at = math.floor(at / step_percent + 0.5) * step_percent  # getStep, with JS's Math.round
    at = max(min(at, 100), 0)
    if at >= 100:
        return high
    return at * (high - low) / 100 + low  # fromStepping


def _same_number(a: Any, b: Any) -> bool:
    """Equal numbers up to float rounding (a slider's step arithmetic)."""
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    return numbers and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _as_text(value: Any, kind: str) -> str:
    if kind == "json":
        return json.dumps(value)
    return "" if value is None else str(value)


def _problem(node: str, name: str, message: str):
    from oremda_lab.spec.pipeline import Problem

    return Problem(f"{node}.{name}", message)
