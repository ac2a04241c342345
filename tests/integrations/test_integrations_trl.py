"""`RewardFunction`: a rewardlab model as a TRL reward function gives exactly `RewardScorer`'s scores."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from rewardlab.data.render import conversation_text
from rewardlab.errors import ConfigError
from rewardlab.integrations.trl import RewardFunction
from rewardlab.models.persistence import export_seq_cls, save_reward_model
from rewardlab.models.reward_model import RewardModel
from rewardlab.overopt.proxies import ProxyScorer
from rewardlab.scoring import RewardScorer
from rewardlab.serve.config import ServeConfig
from rewardlab.serve.runner import BackgroundServer

PROMPTS = [
    [{"role": "user", "content": "What is 2 + 3?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Capital of France?"}],
    [{"role": "user", "content": "Name a colour."}],
]
REPLIES = ["It is 5.", "Paris, without a doubt.", "Blue."]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny-random reward model, a second one (for an ensemble), and the first exported to seq-cls."""
    root = tmp_path_factory.mktemp("trl-models")
    paths = {"model": root / "model", "other": root / "other", "seqcls": root / "seqcls"}
    with torch.random.fork_rng(devices=[]):
        for seed, name in ((0, "model"), (1, "other")):
            torch.manual_seed(seed)
            model, tokenizer = RewardModel.from_base("tiny-random", head="linear")
            save_reward_model(model, tokenizer, paths[name], {"max_length": 512})
    export_seq_cls(paths["model"], paths["seqcls"])
    return paths


def test_conversational_format_gives_reward_scorer_scores(saved):
    scorer = RewardScorer.from_pretrained(saved["model"], device="cpu")
    reward = RewardFunction.from_pretrained(saved["model"], device="cpu")
    completions = [[{"role": "assistant", "content": reply}] for reply in REPLIES]
    got = reward(prompts=PROMPTS, completions=completions, completion_ids=None, trainer_state=None, prompt_id=[1, 2, 3])
    assert got == scorer.score_conversations(PROMPTS, REPLIES)
    assert reward.__name__ == "model"  # TRL logs it as rewards/model/mean


def test_plain_text_format_takes_the_prompt_as_the_users_message(saved):
    scorer = RewardScorer.from_pretrained(saved["model"], device="cpu")
    reward = RewardFunction(scorer)
    questions = [p[-1]["content"] for p in PROMPTS]
    expected = scorer.score_conversations([[{"role": "user", "content": q}] for q in questions], REPLIES)
    assert reward(prompts=questions, completions=REPLIES) == expected
    # and the plain-text rewards differ from the conversational ones where the system prompt was dropped
    assert reward(prompts=PROMPTS, completions=REPLIES)[1] != expected[1]


def test_seq_cls_checkpoint_and_ensemble(saved):
    direct = RewardScorer.from_pretrained(saved["model"], device="cpu").score_conversations(PROMPTS, REPLIES)
    seqcls = RewardFunction.from_pretrained(saved["seqcls"], device="cpu")(prompts=PROMPTS, completions=REPLIES)
    assert seqcls == pytest.approx(direct, abs=1e-4)
    members = [ProxyScorer.load(saved[name], device="cpu") for name in ("model", "other")]
    ensemble = ProxyScorer([m.members[0] for m in members], combine="min")
    got = RewardFunction(ensemble)(prompts=PROMPTS, completions=REPLIES)
    each = [RewardScorer.from_pretrained(saved[n], device="cpu").score_conversations(PROMPTS, REPLIES)
            for n in ("model", "other")]
    assert got == pytest.approx([min(a, b) for a, b in zip(*each)], abs=1e-9)


def test_normalize_and_calibrate(saved):
    scorer = RewardScorer.from_pretrained(saved["model"], device="cpu")
    raw = scorer.score_conversations(PROMPTS, REPLIES)
    reward = RewardFunction(scorer, normalize=(1.0, 2.0))
    assert reward(PROMPTS, REPLIES) == pytest.approx([(v - 1.0) / 2.0 for v in raw])
    mean, std = reward.calibrate(PROMPTS, REPLIES)
    assert mean == pytest.approx(sum(raw) / 3)
    normalized = reward(PROMPTS, REPLIES)
    assert sum(normalized) == pytest.approx(0.0, abs=1e-9) and std > 0


def test_bad_inputs_are_one_line_errors(saved):
    reward = RewardFunction.from_pretrained(saved["model"], device="cpu")
    with pytest.raises(ConfigError, match="2 prompts but 1 completions"):
        reward(PROMPTS[:2], REPLIES[:1])
    with pytest.raises(ConfigError, match="completion 0: no assistant message"):
        reward(PROMPTS[:1], [[{"role": "user", "content": "x"}]])
    with pytest.raises(ConfigError, match="prompt 0: expected a string or a list of chat messages"):
        reward([42], ["x"])
    with pytest.raises(ConfigError, match="normalize"):
        RewardFunction(reward.scorer, normalize=(0.0, 0.0))
    with pytest.raises(ConfigError, match="cannot score"):
        RewardFunction(object())


def test_openrlhf_remote_protocol_serves_the_same_rewards(saved):
    """OpenRLHF's ``--remote_rm_url`` posts rendered texts to ``rewardlab serve``: the same rewards as the adapter."""
    scorer = RewardScorer.from_pretrained(saved["model"], device="cpu")
    server = BackgroundServer(scorer, ServeConfig(host="127.0.0.1", port=0, log_level="warning")).start()
    try:
        texts = [conversation_text(scorer.tokenizer, p, r) for p, r in zip(PROMPTS, REPLIES)]
        body = httpx.post(f"{server.url}/get_reward", json={"query": texts}, timeout=30).json()
    finally:
        server.stop()
    assert body["rewards"] == pytest.approx(RewardFunction(scorer)(PROMPTS, REPLIES), abs=1e-5)
