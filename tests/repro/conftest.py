"""Shared fixtures for the repro tests: the shared data folder and a small pair file with margins."""

from __future__ import annotations

from pathlib import Path

import pytest
from repro_helpers import write_pairs

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared data folder {SHARED_DATA} is missing")
    return SHARED_DATA.resolve()


@pytest.fixture
def margin_pairs(tmp_path: Path) -> Path:
    return write_pairs(tmp_path / "with-margins.jsonl", 120, margins=True)
