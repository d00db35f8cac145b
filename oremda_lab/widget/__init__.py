"""The notebook editor widget; its front end is built from ``js/`` into ``static/``."""

from oremda_lab.widget.editor import PipelineEditor
from oremda_lab.widget.params import control_for, param_widget

__all__ = ["PipelineEditor", "control_for", "param_slider", "param_widget"]


def param_slider(pipeline, engine, node: str, param: str, **kwargs):
    """A standard ipywidget for one parameter that re-runs ``pipeline`` on ``engine`` when moved.

    Use it without an editor, in an ordinary notebook layout; with an editor, use
    :meth:`PipelineEditor.slider` (the editor already re-runs on every change). The
    widget's ``latest_run`` attribute holds the RunFuture of the last submission
    (the engine coalesces a drag: newest wins).
    """
    widget = param_widget(pipeline, node, param, **kwargs)
    widget.latest_run = None

    def rerun(_change):
        widget.latest_run = engine.submit(pipeline)

    widget.observe(rerun, "value")
    return widget
