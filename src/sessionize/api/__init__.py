"""The HTTP API: sessions and statistics read from a store (``create_app``)."""

from sessionize.api.app import create_app

__all__ = ["create_app"]
