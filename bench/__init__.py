"""``python -m bench``: sessionize's figures, each against a baseline measured in the same run.

``sessionize`` is imported before anything imports Polars, so that the allocator settings it
makes for Polars (see ``sessionize/__init__.py``) hold here as they do in the product's own
processes. The plain-Polars baseline runs in the same process and gets them too.
"""

import sessionize  # noqa: F401
