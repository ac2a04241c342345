"""Gold-labelled pairs, exact label noise, and proxy recipes trained on tiny-random through the trainer."""

import json
import random

import numpy as np
import pytest

from rewardlab.data.loaders import load_pairs
from rewardlab.data.pair import PreferencePair
from rewardlab.data.synthetic import add_feature, generate
from rewardlab.errors import ConfigError, UserFileError
from rewardlab.overopt.gold import SyntheticGold, score_samples, synthetic_prompts
from rewardlab.overopt.pairs import apply_label_noise, pairs_from_samples, relabel_pairs, write_pairs_jsonl
from rewardlab.overopt.proxies import (
    PROXY_FILE, PROXY_RECIPES, ProxyScorer, combine_scores, resolve_recipe, train_proxy,
)
from rewardlab.overopt.samples import BonPrompt, PromptSamples
from rewardlab.scoring import RewardScorer
from rewardlab.train.config import TrainConfig


def prompt(i: int) -> BonPrompt:
    return BonPrompt(f"test/{i}", ({"role": "user", "content": f"question {i}"},), {})


def plain_pairs(n: int) -> list[PreferencePair]:
    return [PreferencePair(prompt(i).messages, f"good {i}", f"bad {i}", margin=float(i)) for i in range(n)]


# --- label noise ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n,fraction,expected", [(10, 0.25, 2), (12, 0.25, 3), (7, 0.5, 4), (40, 0.25, 10),
                                                 (10, 0.0, 0), (10, 1.0, 10), (0, 0.25, 0)])
def test_label_noise_flips_exactly_the_requested_count(n, fraction, expected):
    pairs = plain_pairs(n)
    noisy = apply_label_noise(pairs, fraction, seed=3)
    assert len(noisy.flipped) == expected == round(fraction * n)
    assert noisy.flipped == sorted(set(noisy.flipped))
    for index, (before, after) in enumerate(zip(pairs, noisy.pairs)):
        if index in noisy.flipped:
            assert (after.chosen, after.rejected) == (before.rejected, before.chosen)
            assert after.margin == before.margin and after.meta["label_flipped"] is True
        else:
            assert after is before
    assert all(p.chosen.startswith("good") for p in pairs)  # the input is left alone


def test_label_noise_is_deterministic_per_seed_and_checks_the_fraction():
    pairs = plain_pairs(100)
    assert apply_label_noise(pairs, 0.25, seed=1).flipped == apply_label_noise(pairs, 0.25, seed=1).flipped
    assert apply_label_noise(pairs, 0.25, seed=1).flipped != apply_label_noise(pairs, 0.25, seed=2).flipped
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="fraction"):
            apply_label_noise(pairs, bad, seed=0)


# --- pairs from samples --------------------------------------------------------------------------


def samples_with_gold():
    prompts = [prompt(i) for i in range(3)]
    samples = [
        PromptSamples(prompts[0], ["a", "b", "c", "d"]),  # 6 index pairs: one tie (a, c), 5 usable
        PromptSamples(prompts[1], ["x", "x", "y"]),  # (x, x) identical, 2 usable
        PromptSamples(prompts[2], ["p", "q"]),  # a tie only: no pairs
    ]
    gold = [[1.0, 0.0, 1.0, 0.5], [0.2, 0.2, 0.9], [0.3, 0.3]]
    return samples, gold


def test_pairs_from_samples_choose_the_higher_gold_and_count_ties():
    samples, gold = samples_with_gold()
    result = pairs_from_samples(samples, gold, pairs_per_prompt=None, seed=0)
    c = result.counts
    assert (c["prompts"], c["candidates"], c["ties"], c["identical"]) == (3, 6 + 3 + 1, 1 + 1, 1)
    assert c["usable"] == c["selected"] == len(result.pairs) == 5 + 2
    assert c["prompts_without_pairs"] == 1
    for pair in result.pairs:
        assert pair.meta["chosen_gold"] > pair.meta["rejected_gold"]
        assert pair.margin == pytest.approx(pair.meta["chosen_gold"] - pair.meta["rejected_gold"])
        index = int(pair.meta["prompt_id"].split("/")[1])
        responses, scores = samples[index].responses, gold[index]
        assert responses[pair.meta["chosen_index"]] == pair.chosen and scores[pair.meta["chosen_index"]] > \
            scores[pair.meta["rejected_index"]]


def test_pairs_per_prompt_is_a_seeded_draw_independent_of_other_prompts():
    rng = random.Random(0)
    samples = [PromptSamples(prompt(i), [f"r{i}-{j}" for j in range(8)]) for i in range(4)]
    gold = [[rng.random() for _ in range(8)] for _ in range(4)]
    one = pairs_from_samples(samples, gold, pairs_per_prompt=3, seed=7)
    assert one.counts["selected"] == 12 and one.counts["usable"] == 4 * 28
    again = pairs_from_samples(samples, gold, pairs_per_prompt=3, seed=7)
    assert [(p.chosen, p.rejected) for p in one.pairs] == [(p.chosen, p.rejected) for p in again.pairs]
    other_seed = pairs_from_samples(samples, gold, pairs_per_prompt=3, seed=8)
    assert [(p.chosen, p.rejected) for p in one.pairs] != [(p.chosen, p.rejected) for p in other_seed.pairs]
    first_two = pairs_from_samples(samples[:2], gold[:2], pairs_per_prompt=3, seed=7)
    assert [(p.chosen, p.rejected) for p in first_two.pairs] == [(p.chosen, p.rejected) for p in one.pairs[:6]]
    with pytest.raises(ConfigError):
        pairs_from_samples(samples, gold, pairs_per_prompt=0, seed=7)


def test_length_biased_selection_shows_longer_chosen_responses_with_gold_labels():
    rng = random.Random(1)
    samples = [PromptSamples(prompt(i), ["x" * rng.randint(1, 60) + f"-{i}-{j}" for j in range(10)]) for i in range(6)]
    gold = [[float(rng.random() < 0.5) for _ in range(10)] for _ in range(6)]
    plain = pairs_from_samples(samples, gold, pairs_per_prompt=4, seed=3)
    biased = pairs_from_samples(samples, gold, pairs_per_prompt=4, seed=3, longer_chosen=1.0)
    against = pairs_from_samples(samples, gold, pairs_per_prompt=4, seed=3, longer_chosen=0.0)
    for result in (plain, biased, against):
        assert result.counts["longer_chosen"] == sum(len(p.chosen) > len(p.rejected) for p in result.pairs)
        assert all(p.meta["chosen_gold"] > p.meta["rejected_gold"] for p in result.pairs)  # labels stay the gold's
    assert len(biased.pairs) == len(against.pairs) == len(plain.pairs)
    assert against.counts["longer_chosen"] < plain.counts["longer_chosen"] < biased.counts["longer_chosen"]
    # a prompt with too few pairs of the wanted kind fills in with the other kind
    for index in range(6):
        usable = [(i, j) for i in range(10) for j in range(i + 1, 10) if gold[index][i] != gold[index][j]]
        longer = sum(len(samples[index].responses[i if gold[index][i] > gold[index][j] else j])
                     > len(samples[index].responses[j if gold[index][i] > gold[index][j] else i]) for i, j in usable)
        kept = [p for p in biased.pairs if p.meta["prompt_id"] == samples[index].prompt.prompt_id]
        assert sum(len(p.chosen) > len(p.rejected) for p in kept) == min(longer, len(kept))
    with pytest.raises(ConfigError, match="longer_chosen"):
        pairs_from_samples(samples, gold, pairs_per_prompt=4, seed=3, longer_chosen=1.5)


def test_relabel_a_preference_set_by_the_synthetic_gold():
    original = generate("id", n=40, seed=2)
    swapped = [PreferencePair(p.prompt, p.rejected, p.chosen, source=p.source, meta=p.meta) if i % 2 else p
               for i, p in enumerate(original)]
    tie = PreferencePair(original[0].prompt, original[0].meta["chosen_core"], add_feature(
        "flattery", original[0].meta["chosen_core"], random.Random(0)), meta=original[0].meta)
    result = relabel_pairs([*swapped, tie], SyntheticGold())
    assert result.counts["ties"] == 1 and result.counts["swapped"] == 20
    assert [(p.chosen, p.rejected) for p in result.pairs] == [(p.chosen, p.rejected) for p in original]
    assert all(p.margin == 1.0 for p in result.pairs)


def test_written_pairs_load_back_with_their_margins(tmp_path):
    samples, gold = samples_with_gold()
    pairs = pairs_from_samples(samples, gold, pairs_per_prompt=None, seed=0).pairs
    write_pairs_jsonl(pairs, tmp_path / "pairs.jsonl")
    loaded = load_pairs(str(tmp_path / "pairs.jsonl"))
    assert [(p.prompt, p.chosen, p.rejected, p.margin) for p in loaded] == \
        [(p.prompt, p.chosen, p.rejected, p.margin) for p in pairs]


# --- recipes and combination ---------------------------------------------------------------------


def test_combination_rules_on_known_member_scores():
    members = np.array([[1.0, 4.0, -2.0], [3.0, 4.0, 0.0], [2.0, 1.0, 2.0]])
    assert combine_scores(members, "mean").tolist() == [2.0, 3.0, 0.0]
    assert combine_scores(members, "min").tolist() == [1.0, 1.0, -2.0]
    std = np.sqrt([2 / 3, 2.0, 8 / 3])
    assert combine_scores(members, "uncertainty", lam=0.5) == pytest.approx(np.array([2.0, 3.0, 0.0]) - 0.5 * std)
    assert combine_scores(members[:1], "uncertainty", lam=3.0).tolist() == [1.0, 4.0, -2.0]
    with pytest.raises(ConfigError):
        combine_scores(members, "median")


def test_recipe_specs():
    assert set(PROXY_RECIPES) == {"bt", "bt-margin", "bt-label-smoothing", "ensemble", "grm-sft", "grm-dpo-noref"}
    assert resolve_recipe("bt-margin").overrides == {"loss": "margin", "reg": "none"}
    assert resolve_recipe("grm-sft").overrides["reg"] == "sft"
    ensemble = resolve_recipe("ensemble?k=5&combine=uncertainty&lambda=0.5")
    assert (ensemble.members, ensemble.combine, ensemble.lam) == (5, "uncertainty", 0.5)
    assert ensemble.label == "ensemble?k=5&combine=uncertainty&lambda=0.5"
    assert resolve_recipe("saved:/models/rm").path == "/models/rm"
    for bad in ("bt?k=2", "ensemble?k=0", "ensemble?combine=median", "ensemble?size=2", "gpt", "saved:"):
        with pytest.raises(ConfigError):
            resolve_recipe(bad)
    for name in PROXY_RECIPES:  # every recipe's overrides make a valid training configuration
        TrainConfig(**resolve_recipe(name).overrides)


# --- training through the trainer ----------------------------------------------------------------


@pytest.fixture(scope="module")
def gold_pairs():
    prompts = synthetic_prompts(14, seed=0)
    rng = random.Random(0)
    samples = [PromptSamples(p, [p.meta["truth"]["right"], p.meta["truth"]["wrong"],
                                 add_feature("markdown", p.meta["truth"]["wrong"], rng)]) for p in prompts]
    pairs = pairs_from_samples(samples, score_samples(SyntheticGold(), samples), pairs_per_prompt=2, seed=0)
    return prompts, samples, pairs


def base_config(**kw) -> TrainConfig:
    values = dict(model="tiny-random", max_steps=2, batch_size=2, lr=1e-3, max_length=256, save_steps=100,
                  log_interval=1, progress=False)
    values.update(kw)
    return TrainConfig(**values)


@pytest.mark.parametrize("recipe", ["bt", "bt-margin", "bt-label-smoothing", "grm-sft", "grm-dpo-noref"])
def test_each_recipe_trains_and_scores_every_response(recipe, gold_pairs, tmp_path, one_torch_thread):
    prompts, samples, pairs = gold_pairs
    proxy = train_proxy(recipe, pairs, tmp_path / recipe, base=base_config(), echo=lambda s: None)
    settings = json.loads((tmp_path / recipe / "model" / "rewardlab_config.json").read_text())["settings"]
    overrides = PROXY_RECIPES[recipe].overrides
    assert (settings["loss"], settings["reg"]) == (overrides["loss"], overrides["reg"])
    assert proxy.metrics[0]["steps"] == 2 and proxy.metrics[0]["train_pairs"] == len(pairs.pairs)
    written = load_pairs(str(tmp_path / recipe / "pairs.jsonl"))
    assert [p.margin for p in written] == [p.meta["chosen_gold"] - p.meta["rejected_gold"] for p in pairs.pairs]
    scorer = proxy.scorer(device="cpu")
    flat_prompts = [s.prompt for s in samples for _ in s.responses]
    flat = [r for s in samples for r in s.responses]
    scores = scorer.score(flat_prompts, flat)
    assert len(scores) == len(flat) and all(np.isfinite(scores))
    direct = RewardScorer.from_pretrained(tmp_path / recipe / "model", device="cpu").score_conversations(
        [p.messages for p in flat_prompts], flat)
    assert scores == direct


def test_a_finished_proxy_is_not_retrained_and_other_settings_are_refused(gold_pairs, tmp_path, one_torch_thread):
    _, _, pairs = gold_pairs
    train_proxy("bt", pairs, tmp_path / "bt", base=base_config(), echo=lambda s: None)
    weights = sorted((tmp_path / "bt" / "model").glob("*.safetensors"))
    stamps = [w.stat().st_mtime_ns for w in weights]
    said = []
    again = train_proxy("bt", pairs, tmp_path / "bt", base=base_config(progress=True), echo=said.append)
    assert [w.stat().st_mtime_ns for w in weights] == stamps and any("nothing to resume" in s for s in said)
    assert again.metrics[0]["steps"] == 2
    with pytest.raises(ConfigError, match="lr"):
        train_proxy("bt", pairs, tmp_path / "bt", base=base_config(lr=1e-4), echo=lambda s: None)
    with pytest.raises(ConfigError, match="training pairs"):
        train_proxy("bt", apply_label_noise(pairs, 0.25, seed=0), tmp_path / "bt", base=base_config(),
                    echo=lambda s: None)
    (tmp_path / "stranger").mkdir()
    (tmp_path / "stranger" / "notes.txt").write_text("mine")
    with pytest.raises(UserFileError, match="not empty"):
        train_proxy("bt", pairs, tmp_path / "stranger", base=base_config(), echo=lambda s: None)


def test_ensemble_members_differ_and_combine_by_every_rule(gold_pairs, tmp_path, one_torch_thread):
    prompts, samples, pairs = gold_pairs
    proxy = train_proxy("ensemble?k=2&combine=min", pairs, tmp_path / "ens", base=base_config(), echo=lambda s: None)
    record = json.loads((tmp_path / "ens" / PROXY_FILE).read_text())
    assert record["members"] == ["member-0", "member-1"] and set(record["calibration"]) == set(record["members"])
    flat_prompts = [s.prompt for s in samples for _ in s.responses]
    flat = [r for s in samples for r in s.responses]
    raw = np.array([RewardScorer.from_pretrained(tmp_path / "ens" / m, device="cpu").score_conversations(
        [p.messages for p in flat_prompts], flat) for m in record["members"]])
    assert not np.allclose(raw[0], raw[1])  # different seeds, different models
    calibration = np.array([[record["calibration"][m]["mean"], record["calibration"][m]["std"]]
                            for m in record["members"]])
    standardized = (raw - calibration[:, :1]) / calibration[:, 1:]
    assert proxy.scorer(device="cpu").score(flat_prompts, flat) == pytest.approx(standardized.min(0).tolist())
    for rule, lam in (("mean", 1.0), ("uncertainty", 0.7)):
        scorer = ProxyScorer.load(tmp_path / "ens", device="cpu", combine=rule, lam=lam)
        assert scorer.score(flat_prompts, flat) == pytest.approx(combine_scores(standardized, rule, lam).tolist())
    # A larger ensemble trains only the new member; the old ones are reused as they are.
    stamp = (tmp_path / "ens" / "member-0" / "metrics.json").stat().st_mtime_ns
    bigger = train_proxy("ensemble?k=3", pairs, tmp_path / "ens", base=base_config(), echo=lambda s: None)
    assert (tmp_path / "ens" / "member-0" / "metrics.json").stat().st_mtime_ns == stamp
    assert len(bigger.scorer(device="cpu").members) == 3


def test_saved_model_recipe_trains_nothing_and_scores_through_the_reward_scorer(gold_pairs, tmp_path, one_torch_thread):
    prompts, samples, pairs = gold_pairs
    train_proxy("bt", pairs, tmp_path / "bt", base=base_config(), echo=lambda s: None)
    model = tmp_path / "bt" / "model"
    proxy = train_proxy(f"saved:{model}", pairs, tmp_path / "unused", base=base_config(), echo=lambda s: None)
    assert not (tmp_path / "unused").exists()
    responses = [s.responses[0] for s in samples]
    expected = RewardScorer.from_pretrained(model, device="cpu").score_conversations(
        [p.messages for p in prompts], responses)
    assert proxy.scorer(device="cpu").score(prompts, responses) == expected
    folder_proxy = train_proxy(f"saved:{tmp_path / 'bt'}", pairs, tmp_path / "unused", base=base_config())
    assert folder_proxy.scorer(device="cpu").score(prompts, responses) == expected


class Killed(Exception):
    pass


def test_an_interrupted_ensemble_lists_only_finished_members_and_a_rerun_completes_it(gold_pairs, tmp_path,
                                                                                    one_torch_thread):
    _, samples, pairs = gold_pairs
    starts = []

    def kill_second_member(message):
        if message.startswith("model tiny-random"):
            starts.append(message)
            if len(starts) == 2:
                raise Killed()

    with pytest.raises(Killed):
        train_proxy("ensemble?k=2", pairs, tmp_path / "ens", base=base_config(), echo=kill_second_member)
    assert json.loads((tmp_path / "ens" / PROXY_FILE).read_text())["members"] == ["member-0"]
    with pytest.raises(ConfigError, match="1 trained members"):
        ProxyScorer.load(tmp_path / "ens", members=2, device="cpu")
    finished = train_proxy("ensemble?k=2", pairs, tmp_path / "ens", base=base_config(), echo=lambda s: None)
    assert [m["steps"] for m in finished.metrics] == [2, 2]
    assert len(finished.scorer(device="cpu").members) == 2
