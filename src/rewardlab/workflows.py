"""Small workflows behind `rewardlab score`: score a file of pairs, or one prompt/response."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from rewardlab.data.loaders import LoadReport, load_pairs
from rewardlab.files import write_text_atomic
from rewardlab.scoring import RewardScorer, pairwise_accuracy, truncation_note


def score_one(scorer: RewardScorer, prompt: str, response: str, *, system: str | None = None) -> float:
    """The reward of one user prompt and assistant response, rendered with the model's template.

    Too long for the model's ``max_length``: the prompt is cut from the left (counted in
    ``scorer.truncation_counts["cut"]``), as for any single conversation.
    """
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return scorer.score_conversations([messages], [response])[0]


def score_file(scorer: RewardScorer, spec: str, *, out: str | Path | None = None) -> str:
    """Score every pair in ``spec``; write one JSON line per pair; return a one-line summary.

    Each line holds the pair index, its source, both rewards, whether chosen won (strictly) and
    ``truncation``: null, ``"cut"`` (a prompt was cut from the left to fit) or ``"dropped"`` (too long
    under the model's ``drop`` setting: rewards and ``chosen_wins`` are null). Written to ``out``
    atomically, or to standard output when ``out`` is None.
    """
    report = LoadReport()
    pairs = load_pairs(spec, report=report)
    scored = scorer.score_pairs_detailed(pairs, progress="score")
    chosen, rejected = scored.chosen, scored.rejected
    lines = []
    for i, (p, c, r, cut) in enumerate(zip(pairs, chosen, rejected, scored.cut)):
        dropped = math.isnan(c) or math.isnan(r)
        lines.append(json.dumps({
            "index": i, "source": p.source,
            "chosen_reward": None if dropped else c, "rejected_reward": None if dropped else r,
            "chosen_wins": None if dropped else c > r,
            "truncation": "dropped" if dropped else ("cut" if cut else None),
        }))
    text = "\n".join(lines) + ("\n" if lines else "")
    if out is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(Path(out), text)
    ties = sum(c == r for c, r in zip(chosen, rejected))
    length = truncation_note(scorer.truncation, scorer.max_length, cut=scored.cut_count, dropped=scored.dropped_count)
    return (
        f"scored {len(pairs) - scored.dropped_count} of {len(pairs)} pairs from {spec} ({report.summary()}; {length}): "
        f"accuracy {pairwise_accuracy(chosen, rejected):.4f}, ties {ties}"
        + (f", scores written to {out}" if out is not None else "")
    )
