"""Shared test fixtures.

Tests that read the original BioNAS reference data find it through
``bionas_pub_dir`` and skip with a reason when it is absent (it is never part of
the repository).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def find_bionas_pub() -> Path | None:
    """The reference folder: $BIONAS_PUB_DIR, else ../shared/bionas_pub beside the checkout."""
    candidates = [os.environ.get("BIONAS_PUB_DIR"), REPO_ROOT.parent / "shared" / "bionas_pub"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "mock_black_box").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def bionas_pub_dir() -> Path:
    found = find_bionas_pub()
    if found is None:
        pytest.skip("original BioNAS reference data not found (set BIONAS_PUB_DIR or place ../shared)")
    return found
