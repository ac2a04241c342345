"""Scoring honours the model's saved truncation setting and counts what it dropped or cut."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rewardlab.cli import main
from rewardlab.data.pair import PreferencePair
from rewardlab.data.render import render
from rewardlab.models.persistence import save_reward_model
from rewardlab.models.reward_model import RewardModel
from rewardlab.scoring import RewardScorer, UnscorableError, pairwise_accuracy

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MAX_LENGTH = 48
SHORT = PreferencePair(prompt=({"role": "user", "content": "Hi?"},), chosen="Hello.", rejected="Go.")
LONG = PreferencePair(prompt=({"role": "user", "content": "Tell me about the weather today " * 6},),
                      chosen="Sunny.", rejected="No.")


@pytest.fixture(scope="module")
def model_and_tokenizer():
    torch.manual_seed(0)
    return RewardModel.from_base("tiny-random", head="linear")


def scorer(model_and_tokenizer, truncation: str) -> RewardScorer:
    model, tokenizer = model_and_tokenizer
    return RewardScorer(model, tokenizer, {"max_length": MAX_LENGTH, "truncation": truncation})


def test_the_long_pair_really_is_over_length(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    assert render(tokenizer, LONG.prompt, LONG.chosen, max_length=MAX_LENGTH, truncation="drop") is None
    assert render(tokenizer, SHORT.prompt, SHORT.chosen, max_length=MAX_LENGTH, truncation="drop") is not None


def test_drop_setting_leaves_over_length_pairs_unscored_and_counts_them(model_and_tokenizer):
    dropping = scorer(model_and_tokenizer, "drop")
    scored = dropping.score_pairs_detailed([SHORT, LONG])
    assert not math.isnan(scored.chosen[0]) and math.isnan(scored.chosen[1]) and math.isnan(scored.rejected[1])
    assert scored.dropped == [False, True] and scored.cut == [False, False]
    assert dropping.truncation_counts == {"cut": 0, "dropped": 2}  # both conversations of the pair
    only_short = scorer(model_and_tokenizer, "drop").score_pairs([SHORT])
    assert scored.chosen[0] == pytest.approx(only_short[0][0], abs=1e-6)
    assert pairwise_accuracy(scored.chosen, scored.rejected) == float(scored.chosen[0] > scored.rejected[0])


def test_prompt_left_setting_cuts_the_prompt_and_counts_it(model_and_tokenizer):
    cutting = scorer(model_and_tokenizer, "prompt-left")
    scored = cutting.score_pairs_detailed([SHORT, LONG])
    assert scored.cut == [False, True] and scored.dropped == [False, False]
    assert cutting.truncation_counts == {"cut": 2, "dropped": 0}
    _, tokenizer = model_and_tokenizer
    ids = render(tokenizer, LONG.prompt, LONG.chosen, max_length=MAX_LENGTH, truncation="prompt-left").input_ids
    assert len(ids) <= MAX_LENGTH
    assert scored.chosen[1] == pytest.approx(cutting.score_token_ids([ids])[0], abs=1e-6)


def test_a_single_conversation_is_cut_never_dropped(model_and_tokenizer):
    dropping = scorer(model_and_tokenizer, "drop")
    (reward,) = dropping.score_conversations([LONG.prompt], [LONG.chosen])
    assert not math.isnan(reward) and dropping.truncation_counts == {"cut": 1, "dropped": 0}
    with pytest.raises(UnscorableError, match="response alone"):
        dropping.score_conversations([SHORT.prompt], ["word " * 200])


def test_a_saved_setting_that_is_not_a_policy_is_an_error(model_and_tokenizer):
    from rewardlab.errors import ConfigError

    with pytest.raises(ConfigError, match="truncation setting 'right'"):
        scorer(model_and_tokenizer, "right")


# --- through the real commands ------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved(model_and_tokenizer, tmp_path_factory):
    model, tokenizer = model_and_tokenizer
    root = tmp_path_factory.mktemp("truncation")
    for policy in ("drop", "prompt-left"):
        save_reward_model(model, tokenizer, root / policy, {"max_length": MAX_LENGTH, "truncation": policy})
    data = root / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": p.prompt[0]["content"], "chosen": p.chosen, "rejected": p.rejected})
                            + "\n" for p in (SHORT, LONG)))
    return root, data


def test_score_command_reports_dropped_and_cut_pairs(saved, capsys):
    root, data = saved
    out = root / "drop.jsonl"
    assert main(["score", str(root / "drop"), "--data", str(data), "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "scored 1 of 2 pairs" in summary and "truncation drop: 1 pairs dropped" in summary
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["truncation"] for r in rows] == [None, "dropped"]
    assert rows[1]["chosen_reward"] is None and rows[1]["chosen_wins"] is None

    assert main(["score", str(root / "prompt-left"), "--data", str(data), "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "scored 2 of 2 pairs" in summary and "0 pairs dropped (too long), 1 cut" in summary
    assert [json.loads(line)["truncation"] for line in out.read_text().splitlines()] == [None, "cut"]


def test_score_prompt_says_when_it_cut(saved, capsys):
    root, _ = saved
    assert main(["score", str(root / "drop"), "--prompt", LONG.prompt[0]["content"], "--response", "Sunny."]) == 0
    captured = capsys.readouterr()
    assert not math.isnan(float(captured.out)) and "oldest prompt tokens were cut" in captured.err
    assert main(["score", str(root / "drop"), "--prompt", "Hi?", "--response", "Hello."]) == 0
    assert "cut" not in capsys.readouterr().err


def test_eval_command_follows_each_models_setting(saved, capsys):
    root, data = saved
    code = main(["eval", f"drop={root / 'drop'}", f"cut={root / 'prompt-left'}", "--data", f"d={data}", "--json",
                 "--no-progress"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    drop, cut = report["models"]
    assert (drop["truncation"], drop["dropped"], drop["cut"], drop["items_scored"]) == ("drop", {"d": 1}, {}, 1)
    assert (cut["truncation"], cut["dropped"], cut["cut"], cut["items_scored"]) == ("prompt-left", {}, {"d": 1}, 2)
    assert main(["eval", f"drop={root / 'drop'}", "--data", f"d={data}", "--no-progress"]) == 0
    markdown = capsys.readouterr().out
    assert "| dropped (too long) | prompt cut to fit |" in markdown and f"| {MAX_LENGTH} (drop) |" in markdown
