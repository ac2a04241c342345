"""Small workflows behind `rewardlab score`: score a file of pairs, or one prompt/response."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rewardlab.data.loaders import LoadReport, load_pairs
from rewardlab.files import write_text_atomic
from rewardlab.scoring import RewardScorer, pairwise_accuracy


def score_one(scorer: RewardScorer, prompt: str, response: str, *, system: str | None = None) -> float:
    """The reward of one user prompt and assistant response, rendered with the model's template."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return scorer.score_conversations([messages], [response])[0]


def score_file(scorer: RewardScorer, spec: str, *, out: str | Path | None = None) -> str:
    """Score every pair in ``spec``; write one JSON line per pair; return a one-line summary.

    Each line holds the pair index, its source, both rewards and whether chosen won (strictly).
    Written to ``out`` atomically, or to standard output when ``out`` is None.
    """
    report = LoadReport()
    pairs = load_pairs(spec, report=report)
    chosen, rejected = scorer.score_pairs(pairs, progress="score")
    lines = [
        json.dumps(
            {"index": i, "source": p.source, "chosen_reward": c, "rejected_reward": r, "chosen_wins": c > r}
        )
        for i, (p, c, r) in enumerate(zip(pairs, chosen, rejected))
    ]
    text = "\n".join(lines) + ("\n" if lines else "")
    if out is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(Path(out), text)
    ties = sum(c == r for c, r in zip(chosen, rejected))
    return (
        f"scored {len(pairs)} pairs from {spec} ({report.summary()}): "
        f"accuracy {pairwise_accuracy(chosen, rejected):.4f}, ties {ties}"
        + (f", scores written to {out}" if out is not None else "")
    )
