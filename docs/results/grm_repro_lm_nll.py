"""Diagnostic for docs/results/grm-repro.md: did reward training move the language model at all?

GRM's regularizer is meant to stop reward training from degrading the hidden states. If plain BT
training leaves the language model's likelihood of held-out responses unchanged, there was nothing
for the regularizer to protect. This prints, for the base model and every model of a finished
`rewardlab repro grm` output folder, the mean per-token negative log-likelihood of the held-out
pairs' chosen responses under the model's own language-model head (same rendering and max length
as training).

    python docs/results/grm_repro_lm_nll.py repro-grm [--threads N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from rewardlab.data.loaders import load_pairs
from rewardlab.models.persistence import load_reward_model
from rewardlab.models.reward_model import RewardModel
from rewardlab.train.batches import tokenize_pairs
from rewardlab.train.packing import collate_packed_pairs
from rewardlab.train.step import pair_logprobs


def mean_chosen_nll(model: RewardModel, tokenizer, pairs, max_length: int, batch_size: int = 8) -> tuple[float, int]:
    """Mean negative log-likelihood per chosen-response token, and the number of tokens."""
    items = tokenize_pairs(tokenizer, pairs, max_length=max_length, truncation="drop")
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            chosen, _ = pair_logprobs(model, collate_packed_pairs(chunk), chosen_only=True)
            total -= chosen.sum().item()
            tokens += sum(len(item.chosen_ids) - item.chosen_start for item in chunk)
    return total / tokens, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the output folder of `rewardlab repro grm`")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    identity = json.loads((args.out / "run.json").read_text(encoding="utf-8"))["identity"]
    pairs = load_pairs(str(args.out / "data" / "heldout.jsonl"))
    runs = sorted(p for p in (args.out / "runs").glob("*/seed-*") if (p / "metrics.json").is_file())
    print(f"held-out pairs: {len(pairs)}; max length {identity['max_length']}")
    print(f"{'model':<30}{'chosen tokens':>14}{'NLL/token':>11}")
    for name, path in [("base " + identity["model"], None)] + [(f"{p.parent.name} {p.name}", p) for p in runs]:
        started = time.perf_counter()
        if path is None:
            model, tokenizer = RewardModel.from_base(identity["model"], head="linear")
        else:
            model, tokenizer, _ = load_reward_model(path)
        nll, tokens = mean_chosen_nll(model.eval(), tokenizer, pairs, identity["max_length"])
        print(f"{name:<30}{tokens:>14}{nll:>11.4f}   ({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
