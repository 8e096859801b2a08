"""Errors that a user can act on: each says what is wrong, where, and what to do."""

from __future__ import annotations


class SessionizeError(Exception):
    """Base for errors the CLI reports as a one-paragraph message instead of a traceback."""


class ConfigError(SessionizeError):
    """A configuration value is missing, malformed or contradictory; raised at start-up."""


class InputError(SessionizeError):
    """An input file cannot be opened or is not in the format it was declared to be."""


class StoreError(SessionizeError):
    """A store (SQLite, PostgreSQL) cannot be opened or written."""


class CacheError(SessionizeError):
    """The session cache (Redis) cannot be reached or refused a command."""
