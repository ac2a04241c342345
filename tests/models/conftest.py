"""Shared fixtures for the models tests: an isolated model cache and the tiny-random model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rewardlab.models.cache import CACHE_ENV_VAR


@pytest.fixture(scope="module", autouse=True)
def isolated_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Each test module builds tiny-random into its own cache, so cache behaviour is tested for real."""
    root = tmp_path_factory.mktemp("rewardlab-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV_VAR, str(root))
        yield root
