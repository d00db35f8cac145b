"""The engine: validates, schedules, caches and reports on pipeline runs."""

from oremda_lab.engine.engine import Engine, Run, RunFuture
from oremda_lab.engine.events import NodeEvent
from oremda_lab.engine.scheduler import NodeResult

__all__ = ["Engine", "NodeEvent", "NodeResult", "Run", "RunFuture"]
