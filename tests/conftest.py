"""Shared fixtures: where the project's shared cases and real datasets live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """$SESSIONIZE_SHARED, else ``../shared`` beside the checkout, else the machine's copy
    (``/work/shared``, ``~/shared``): so a clone made anywhere on the machine finds it."""
    candidates = [os.environ.get("SESSIONIZE_SHARED"), REPO.parent / "shared",
                  Path("/work/shared"), Path.home() / "shared"]
    for c in candidates:
        if c and (Path(c) / "spec" / "SEMANTICS.md").exists():
            return Path(c).resolve()
    looked = ", ".join(str(c) for c in candidates if c)
    raise RuntimeError(
        f"cannot find the shared/ folder (spec, cases, data); looked in {looked}. "
        "Set SESSIONIZE_SHARED=/path/to/shared"
    )


SHARED = shared_dir()
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA
