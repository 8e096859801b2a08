"""Shared fixtures: where the project's shared cases and real datasets live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``../shared`` beside the checkout (CI lays a copy there), or $SESSIONIZE_SHARED."""
    candidates = [os.environ.get("SESSIONIZE_SHARED"), REPO.parent / "shared", REPO / "../../shared"]
    for c in candidates:
        if c and (Path(c) / "spec" / "SEMANTICS.md").exists():
            return Path(c).resolve()
    raise RuntimeError(
        "cannot find the shared/ folder (spec, cases, data) beside the checkout; "
        "set SESSIONIZE_SHARED=/path/to/shared"
    )


SHARED = shared_dir()
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA
