"""Scoring throughput: rewardlab's scoring path vs a plain transformers text-classification pipeline.

Both score the same conversations with the same weights: a rewardlab reward model (linear head)
through `rewardlab eval`'s scorer, and its `export --to seq-cls` copy through
``pipeline("text-classification")`` fed the same rendered texts in dataset order. Prints pairs/s
for each, the ratio, the largest score difference, versions and hardware. Not a timed test: run
it by hand.

    python benchmarks/score_throughput.py                              # smollm2-135m, 64 hh-rlhf pairs (minutes on a small CPU)
    python benchmarks/score_throughput.py --base tiny-random --pairs 64 # quick smoke run
    python benchmarks/score_throughput.py --model runs/rm --device cuda --pairs 1000 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from rewardlab.machine import hardware, package_versions

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT / ".." / "shared" / "data" / "anthropic-hh-rlhf" / "harmless-base-test.jsonl.gz"


def build_model(base: str, folder: Path) -> Path:
    """A reward model with a linear head on ``base`` (speed does not depend on the head's values)."""
    from rewardlab.models.persistence import save_reward_model
    from rewardlab.models.reward_model import RewardModel

    torch.manual_seed(0)
    model, tokenizer = RewardModel.from_base(base, head="linear")
    save_reward_model(model, tokenizer, folder, {"max_length": 1024})
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a saved rewardlab reward model with a linear head (default: build one)")
    parser.add_argument("--base", default="smollm2-135m", help="backbone for the built model (default smollm2-135m)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="pairs in any `rewardlab eval --data` format")
    parser.add_argument("--pairs", type=int, default=64, help="number of pairs to score (default 64)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--json", dest="json_out", help="also write the results as JSON here")
    args = parser.parse_args()

    from transformers import pipeline

    from rewardlab.data.render import conversation_text
    from rewardlab.evaluate.formats import load_eval_dataset
    from rewardlab.evaluate.scorers import RewardModelScorer, pick_device, pick_dtype
    from rewardlab.models.persistence import export_seq_cls

    device = pick_device(args.device)
    dataset = load_eval_dataset(args.data, limit=args.pairs)
    items = [i for i in dataset.items if len(i.rejected) == 1 and i.candidate_prompts is None]
    prompts = [i.prompt for i in items] * 2
    responses = [i.chosen for i in items] + [i.rejected[0] for i in items]

    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(args.model) if args.model else build_model(args.base, Path(scratch) / "rm")
        export_dir = Path(scratch) / "seqcls"
        export_seq_cls(model_dir, export_dir)

        ours = RewardModelScorer(model_dir, device=str(device), batch_size=args.batch_size)
        ours.score(prompts[:4], responses[:4])  # warm-up
        started = time.perf_counter()
        our_scores = ours.score(prompts, responses)
        if device.type == "cuda":
            torch.cuda.synchronize()
        our_seconds = time.perf_counter() - started
        tokenizer = ours.scorer.tokenizer
        max_length = ours.scorer.max_length
        del ours

        classifier = pipeline("text-classification", model=str(export_dir), device=device, dtype=pick_dtype(device))
        classifier.tokenizer.pad_token = tokenizer.pad_token
        classifier.model.config.pad_token_id = tokenizer.pad_token_id
        texts = [conversation_text(tokenizer, p, r) for p, r in zip(prompts, responses)]
        call = dict(batch_size=args.batch_size, function_to_apply="none", truncation=True, max_length=max_length,
                    add_special_tokens=False)
        classifier(texts[:4], **call)  # warm-up
        started = time.perf_counter()
        outputs = classifier(texts, **call)
        if device.type == "cuda":
            torch.cuda.synchronize()
        pipeline_seconds = time.perf_counter() - started

    pipeline_scores = [o["score"] for o in outputs]
    comparable = [(a, b) for a, b in zip(our_scores, pipeline_scores) if a == a]
    result = {
        "data": args.data,
        "pairs": len(items),
        "batch_size": args.batch_size,
        "device": str(device),
        "dtype": str(pick_dtype(device)).removeprefix("torch."),
        "rewardlab_pairs_per_s": len(items) / our_seconds,
        "pipeline_pairs_per_s": len(items) / pipeline_seconds,
        "speedup": pipeline_seconds / our_seconds,
        "max_abs_score_difference": max(abs(a - b) for a, b in comparable) if comparable else None,
        "versions": package_versions(("torch", "transformers")),
        "hardware": hardware(),
    }
    print(f"pairs: {result['pairs']} from {args.data} (batch size {args.batch_size}, {result['device']}, {result['dtype']})")
    print(f"rewardlab scoring     : {result['rewardlab_pairs_per_s']:.2f} pairs/s")
    print(f"transformers pipeline : {result['pipeline_pairs_per_s']:.2f} pairs/s")
    print(f"ratio (rewardlab / pipeline): {result['speedup']:.2f}x")
    print(f"largest score difference: {result['max_abs_score_difference']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    print("hardware: " + ", ".join(f"{k}: {v}" for k, v in result["hardware"].items()))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
