"""Caches of the sessions still open or inactive, for sub-millisecond active-session lookups.

A cache holds only what the API's ``/users/{key}/sessions/active`` reads; the store stays the
source of truth, and a cache can always be rebuilt from it (``rebuild_partition``).
"""

from sessionize.caches.base import SessionCache

__all__ = ["SessionCache"]
