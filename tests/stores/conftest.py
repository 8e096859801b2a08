"""The real-run fixtures (rees46 through the engine into a SqliteStore), from tests/realrun.py."""

from tests.realrun import real_run, unflushed_run

__all__ = ["real_run", "unflushed_run"]
