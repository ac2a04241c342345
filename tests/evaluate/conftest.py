"""Fixtures for the evaluation tests: real tiny reward models on disk and the shared data folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared data folder {SHARED_DATA} is missing")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A linear-head and an MLP-head tiny-random reward model, and the linear one exported to seq-cls."""
    from rewardlab.models.persistence import export_seq_cls, save_reward_model
    from rewardlab.models.reward_model import RewardModel

    root = tmp_path_factory.mktemp("eval-models")
    paths = {"linear": root / "linear", "mlp": root / "mlp", "seqcls": root / "seqcls"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model, tokenizer = RewardModel.from_base("tiny-random", head="linear")
        save_reward_model(model, tokenizer, paths["linear"], {"max_length": 1024})
        torch.manual_seed(1)
        model, tokenizer = RewardModel.from_base("tiny-random", head="mlp")
        save_reward_model(model, tokenizer, paths["mlp"], {"max_length": 1024})
    export_seq_cls(paths["linear"], paths["seqcls"])
    return paths
