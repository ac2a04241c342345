"""Shared fixtures for the reward-server tests: one saved tiny-random reward model per session, and
real servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from rewardlab.models.heads import HeadConfig
from rewardlab.models.persistence import save_reward_model
from rewardlab.models.registry import load_backbone
from rewardlab.models.forward import text_hidden_size, unwrap_causal_lm
from rewardlab.models.reward_model import RewardModel
from rewardlab.scoring import RewardScorer
from rewardlab.serve.config import ServeConfig
from rewardlab.serve.runner import BackgroundServer

TINY_MAX_LENGTH = 256


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-random reward model with a seeded MLP head, saved the way `rewardlab train` saves."""
    torch.manual_seed(1234)
    backbone, tokenizer = load_backbone("tiny-random")
    head = HeadConfig(type="mlp", hidden_size=text_hidden_size(unwrap_causal_lm(backbone)))
    model = RewardModel(backbone, head, base_model="tiny-random")
    out = tmp_path_factory.mktemp("serve") / "tiny-rm"
    save_reward_model(model, tokenizer, out, settings={"max_length": TINY_MAX_LENGTH, "truncation": "drop"})
    return out


@pytest.fixture(scope="session")
def tiny_scorer(tiny_model_dir: Path) -> RewardScorer:
    """The saved model loaded back through the one scoring path, on CPU."""
    return RewardScorer.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture()
def serve(tiny_scorer: RewardScorer) -> Iterator:
    """Start a server with the given settings (port 0: a free loopback port); stopped after the test.

    ``prepare`` (optional) receives the `BackgroundServer` before it starts, e.g. to add a route.
    """
    started: list[BackgroundServer] = []

    def start(prepare=None, **settings) -> tuple[httpx.Client, BackgroundServer]:
        config = ServeConfig(host="127.0.0.1", port=0, log_level="warning", **settings)
        server = BackgroundServer(tiny_scorer, config)
        if prepare is not None:
            prepare(server)
        started.append(server.start())
        return httpx.Client(base_url=server.url, timeout=30), server

    yield start
    for server in started:
        server.stop()
