"""Shared test fixtures: the test images that sit beside the checkout, in ../shared."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_IMAGES = REPO.parent / "shared" / "testimages"


def shared_image(name: str) -> Path:
    """A real JPEG from ../shared/testimages; a missing one fails the test (never skips it)."""
    p = SHARED_IMAGES / name
    if not p.exists():
        pytest.fail(f"{p} is missing: the suite needs the shared test images beside the checkout "
                    "(../shared/testimages)")
    return p
