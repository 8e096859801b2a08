"""The pure session engine: rules, sessions and their metrics. No I/O, no clock."""

from sessionize.engine.config import EngineConfig, MetricsConfig
from sessionize.engine.engine import ChangeSet, SessionEngine
from sessionize.engine.event import Event, Reason, Rejection

__all__ = ["ChangeSet", "EngineConfig", "Event", "MetricsConfig", "Reason", "Rejection", "SessionEngine"]
