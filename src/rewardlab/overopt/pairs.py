"""Gold-labelled preference pairs for training proxies, and exact, seeded label noise.

* `pairs_from_samples`: pairs of one prompt's own sampled responses whose gold scores differ; the
  chosen side is always the higher-gold one and ``margin`` is the gold difference (for ``bt-margin``).
  Sampling is stated and seeded: of the C(K, 2) index pairs of a prompt, those with equal gold (ties)
  or identical texts are skipped and counted; of the rest, ``pairs_per_prompt`` are drawn without
  replacement from a stream seeded by (seed, prompt id), so one prompt's pairs do not depend on the others.
* `relabel_pairs`: an existing preference set with its labels replaced by the gold (ties skipped, counted).
* `apply_label_noise`: flips exactly ``round(fraction · len(pairs))`` labels (Python's round, half to
  even), chosen by a seeded draw, and records which (the GRM paper's noisy condition).
* `write_pairs_jsonl`: the pairs in the explicit conversational format the loaders read, with ``margin``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rewardlab.data.pair import PreferencePair
from rewardlab.errors import ConfigError
from rewardlab.files import write_text_atomic
from rewardlab.overopt.samples import BonPrompt, PromptSamples

__all__ = ["PairSet", "apply_label_noise", "pairs_file_text", "pairs_from_samples", "relabel_pairs",
           "write_pairs_jsonl"]


@dataclass
class PairSet:
    """Gold-labelled pairs and how they were selected.

    ``counts``: ``prompts``, ``candidates`` (index pairs considered), ``ties`` (equal gold, skipped),
    ``identical`` (same text, skipped), ``usable`` (gold differs), ``selected`` (kept), and
    ``prompts_without_pairs``. ``flipped``: indices into ``pairs`` whose label noise swapped them.
    """

    pairs: list[PreferencePair]
    counts: dict[str, int]
    flipped: list[int] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"pairs": len(self.pairs), **self.counts, "flipped": len(self.flipped)}


def pairs_from_samples(
    samples: Sequence[PromptSamples],
    gold: Sequence[Sequence[float]],
    *,
    pairs_per_prompt: int | None,
    seed: int,
    longer_chosen: float | None = None,
) -> PairSet:
    """Pairs of each prompt's own responses whose gold differs; chosen = the higher gold, margin = the difference.

    ``gold[p][j]`` is the gold score of ``samples[p].responses[j]`` (see `rewardlab.overopt.gold.score_samples`).
    ``pairs_per_prompt`` None keeps every usable pair. Pair order: prompts in the given order, and within a
    prompt the order of the seeded draw.

    ``longer_chosen`` (a fraction) biases the selection the way length-biased preference data is: of each
    prompt's drawn pairs, that share (rounded) is drawn from pairs whose chosen response is the longer one
    (in characters) and the rest from the others, as far as each kind lasts (the other kind fills in). The
    labels stay the gold's; only which pairs are shown changes, so a proxy can learn length as a feature.
    ``counts["longer_chosen"]`` reports how many selected pairs have the longer response chosen.
    """
    if len(gold) != len(samples):
        raise ValueError(f"{len(samples)} prompts of samples but gold scores for {len(gold)}")
    if pairs_per_prompt is not None and (isinstance(pairs_per_prompt, bool) or pairs_per_prompt < 1):
        raise ConfigError(f"pairs per prompt must be at least 1 (or unset for all), got {pairs_per_prompt!r}")
    if longer_chosen is not None and not 0.0 <= float(longer_chosen) <= 1.0:
        raise ConfigError(f"longer_chosen must be a fraction in [0, 1], got {longer_chosen!r}")
    counts = dict.fromkeys(("prompts", "candidates", "ties", "identical", "usable", "selected",
                            "prompts_without_pairs", "longer_chosen"), 0)
    pairs: list[PreferencePair] = []
    for item, scores in zip(samples, gold):
        responses = item.responses
        if len(scores) != len(responses):
            raise ValueError(f"prompt {item.prompt.prompt_id}: {len(responses)} responses but "
                             f"{len(scores)} gold scores")
        _check_finite(scores, item.prompt.prompt_id)
        counts["prompts"] += 1
        usable = []
        for i, j in itertools.combinations(range(len(responses)), 2):
            counts["candidates"] += 1
            if responses[i] == responses[j]:
                counts["identical"] += 1
            elif scores[i] == scores[j]:
                counts["ties"] += 1
            else:
                usable.append((i, j))
        counts["usable"] += len(usable)
        rng = random.Random(f"rewardlab.overopt.pairs/{seed}/{item.prompt.prompt_id}")
        take = len(usable) if pairs_per_prompt is None else min(pairs_per_prompt, len(usable))
        if longer_chosen is None:
            drawn = rng.sample(usable, take)
        else:
            drawn = _length_biased_draw(rng, usable, responses, scores, take, longer_chosen)
        counts["longer_chosen"] += sum(_chosen_is_longer(responses, scores, pair) for pair in drawn)
        counts["selected"] += len(drawn)
        counts["prompts_without_pairs"] += not drawn
        for i, j in drawn:
            hi, lo = (i, j) if scores[i] > scores[j] else (j, i)
            pairs.append(_gold_pair(item.prompt, responses[hi], responses[lo], float(scores[hi]), float(scores[lo]),
                                    {"chosen_index": hi, "rejected_index": lo}))
    return PairSet(pairs, counts)


def _chosen_is_longer(responses: Sequence[str], scores: Sequence[float], pair: tuple[int, int]) -> bool:
    i, j = pair
    hi, lo = (i, j) if scores[i] > scores[j] else (j, i)
    return len(responses[hi]) > len(responses[lo])


def _length_biased_draw(rng: random.Random, usable: list[tuple[int, int]], responses: Sequence[str],
                        scores: Sequence[float], take: int, share: float) -> list[tuple[int, int]]:
    """``take`` pairs, ``round(share * take)`` of them (as far as there are) with the longer response chosen."""
    longer = [pair for pair in usable if _chosen_is_longer(responses, scores, pair)]
    other = [pair for pair in usable if not _chosen_is_longer(responses, scores, pair)]
    want = min(len(longer), max(round(share * take), take - len(other)))
    drawn = rng.sample(longer, want) + rng.sample(other, take - want)
    rng.shuffle(drawn)
    return drawn


def relabel_pairs(pairs: Sequence[PreferencePair], gold: Any, *, prompt_id_prefix: str = "pair") -> PairSet:
    """``pairs`` relabelled by ``gold`` (a `GoldScorer`): chosen = the higher-gold response, margin = the gap.

    Each pair becomes a `BonPrompt` ``<prefix>/<index>`` whose ``meta`` is the pair's (synthetic pairs carry
    ``family`` and ``truth``, which `SyntheticGold` needs). Ties are skipped and counted.
    """
    prompts = [BonPrompt(f"{prompt_id_prefix}/{i:06d}", p.prompt, dict(p.meta)) for i, p in enumerate(pairs)]
    chosen = gold.score(prompts, [p.chosen for p in pairs])
    rejected = gold.score(prompts, [p.rejected for p in pairs])
    _check_finite([*chosen, *rejected], "the relabelled pairs")
    counts = {"prompts": len(pairs), "candidates": len(pairs), "ties": 0, "identical": 0, "usable": 0,
              "selected": 0, "prompts_without_pairs": 0, "swapped": 0}
    out: list[PreferencePair] = []
    for prompt, pair, c, r in zip(prompts, pairs, chosen, rejected):
        if pair.chosen == pair.rejected:
            counts["identical"] += 1
            continue
        if c == r:
            counts["ties"] += 1
            continue
        counts["swapped"] += c < r
        hi, lo = (pair.chosen, pair.rejected) if c > r else (pair.rejected, pair.chosen)
        out.append(_gold_pair(prompt, hi, lo, max(c, r), min(c, r), {"original_source": pair.source}))
    counts["usable"] = counts["selected"] = len(out)
    counts["prompts_without_pairs"] = len(pairs) - len(out)
    return PairSet(out, counts)


def apply_label_noise(pairs: Sequence[PreferencePair] | PairSet, fraction: float, seed: int) -> PairSet:
    """``pairs`` with exactly ``round(fraction · len(pairs))`` of them swapped (chosen ↔ rejected), seeded.

    The flipped pairs keep their margin (the noise flips the label, not its confidence) and carry
    ``meta["label_flipped"] = True``; `PairSet.flipped` lists their indices in ascending order. A `PairSet`
    keeps its selection counts.
    """
    counts = dict(pairs.counts) if isinstance(pairs, PairSet) else {"selected": len(pairs)}
    items = list(pairs.pairs if isinstance(pairs, PairSet) else pairs)
    fraction = float(fraction)
    if math.isnan(fraction) or not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"label noise must be a fraction in [0, 1], got {fraction}")
    count = round(fraction * len(items))
    flipped = sorted(random.Random(f"rewardlab.overopt.noise/{seed}").sample(range(len(items)), count))
    for index in flipped:
        pair = items[index]
        items[index] = replace(pair, chosen=pair.rejected, rejected=pair.chosen,
                               meta={**pair.meta, "label_flipped": True})
    return PairSet(items, counts, flipped)


def pairs_file_text(pairs: Sequence[PreferencePair]) -> str:
    """JSON Lines of ``pairs`` in the explicit conversational format (``prompt`` messages, one-message
    ``chosen``/``rejected``, ``margin`` and ``source`` where set), as `rewardlab.data.loaders` reads it."""
    lines = [json.dumps(pair.to_record(), ensure_ascii=False) + "\n" for pair in pairs]
    return "".join(lines)


def write_pairs_jsonl(pairs: Sequence[PreferencePair], path: Path) -> str:
    """Write `pairs_file_text` to ``path`` atomically; returns the text's SHA-256."""
    text = pairs_file_text(pairs)
    write_text_atomic(Path(path), text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _gold_pair(prompt: BonPrompt, chosen: str, rejected: str, chosen_gold: float, rejected_gold: float,
               extra: dict[str, Any]) -> PreferencePair:
    return PreferencePair(
        prompt=prompt.messages, chosen=chosen, rejected=rejected, margin=chosen_gold - rejected_gold,
        source=f"gold:{prompt.prompt_id}",
        meta={"prompt_id": prompt.prompt_id, "chosen_gold": chosen_gold, "rejected_gold": rejected_gold, **extra},
    )


def _check_finite(scores: Sequence[float], where: str) -> None:
    if any(not math.isfinite(float(s)) for s in scores):
        raise ValueError(f"{where}: gold scores must be finite numbers")
