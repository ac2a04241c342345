"""Sampling throughput: `HFPolicy.sample` (one prefill, shared KV cache) vs ``generate(num_return_sequences=K)``.

Both draw K samples of the same prompt with the same model object (same weights, dtype, device) and
the same lengths: by default every sample runs to exactly ``--new-tokens`` tokens (EOS is ignored by
our sampler and suppressed with ``min_new_tokens`` in ``generate``), so both do the same decoding
work and differ only in how the prompt is prefilled and how tokens are drawn. ``--allow-eos`` lets
samples stop at EOS instead (then tokens are counted up to each sample's end). Two prompts: a short
synthetic-task question (`rewardlab.data.synthetic`) and a long one, the opening transcript of a tool
environment's episode (preamble and few-shot demonstration included, about 1k tokens). Prints
samples/s and generated tokens/s of each, the ratio, versions and hardware, and, at full length, the
ratio's bound when every token position costs the same (the prefills saved are all there is to gain
at equal work). Not a timed test: run it by hand.

    python benchmarks/sample_throughput.py                                    # smollm2-135m, K=64, 64 new tokens
    python benchmarks/sample_throughput.py --model tiny-random --k 8 --new-tokens 8   # quick smoke run
    python benchmarks/sample_throughput.py --device cuda --k 256 --json out.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

from rewardlab.machine import describe_machine
from rewardlab.policies.base import SamplingSettings
from rewardlab.policies.hf import HFPolicy

LONG_ENVIRONMENT = "tool-use-flattery"


class FullLengthPolicy(HFPolicy):
    """`HFPolicy` whose samples never stop at EOS, so every one is exactly ``max_new_tokens`` long."""

    def eos_ids(self) -> list[int]:
        return []


def benchmark_prompts() -> dict[str, list[dict[str, str]]]:
    """The short (synthetic arithmetic question) and long (tool-environment episode opening) prompts."""
    from rewardlab.data.synthetic import FAMILY_BUILDERS
    from rewardlab.envs.environments import make_environment
    from rewardlab.envs.protocol import build_messages

    item = FAMILY_BUILDERS["arithmetic"](random.Random(0))
    environment = make_environment(LONG_ENVIRONMENT)
    return {
        "short": [{"role": "user", "content": item.question}],
        "long": build_messages(environment.variant(0, 0).task, environment.uses_tools),
    }


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_sampler(policy: HFPolicy, messages: list[dict[str, str]], settings: SamplingSettings,
                 k: int) -> tuple[float, int]:
    """Seconds and generated tokens of one `sample` call (token ids, then decoded, as `sample` does)."""
    _synchronize(policy.device)
    started = time.perf_counter()
    sampled = policy.sample_tokens(messages, k, settings)
    policy.tokenizer.batch_decode(sampled.tokens, skip_special_tokens=True)
    _synchronize(policy.device)
    return time.perf_counter() - started, sum(len(row) for row in sampled.tokens)


def time_generate(policy: HFPolicy, messages: list[dict[str, str]], settings: SamplingSettings, k: int,
                  full_length: bool) -> tuple[float, int]:
    """Seconds and generated tokens of one ``generate(num_return_sequences=k, do_sample=True)`` call."""
    ids = policy.prompt_ids(policy.prompt_text(messages), settings.max_new_tokens)
    input_ids = torch.tensor([ids], device=policy.device)
    options: dict[str, Any] = {
        "do_sample": True, "num_return_sequences": k, "max_new_tokens": settings.max_new_tokens,
        "temperature": settings.temperature, "top_p": settings.top_p, "top_k": 0,
        "pad_token_id": policy.tokenizer.pad_token_id,
    }
    if full_length:
        options["min_new_tokens"] = settings.max_new_tokens
    torch.manual_seed(settings.seed)
    _synchronize(policy.device)
    started = time.perf_counter()
    with torch.inference_mode():
        output = policy.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **options)
    new = output[:, input_ids.shape[1]:].tolist()
    policy.tokenizer.batch_decode(new, skip_special_tokens=True)
    _synchronize(policy.device)
    seconds = time.perf_counter() - started
    stops = set(policy.eos_ids()) if not full_length else set()
    tokens = sum(next((i for i, token in enumerate(row) if token in stops), len(row)) for row in new)
    return seconds, tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="policy model (default smollm2-135m; tiny-random to smoke-test)")
    parser.add_argument("--k", type=int, default=64, help="samples per prompt (default 64)")
    parser.add_argument("--new-tokens", type=int, default=64, help="new tokens per sample (default 64)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--prompts", choices=("short", "long", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per method and prompt (default 1; best is kept)")
    parser.add_argument("--allow-eos", action="store_true", help="let samples stop at EOS (default: all run full length)")
    parser.add_argument("--sample-batch", type=int, help="rows decoded at once by our sampler (default: what fits)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                        help="weights of the one model both methods use (default auto: bfloat16 on a GPU, else float32)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", dest="json_out", help="also write the results as JSON here")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    policy_class = HFPolicy if args.allow_eos else FullLengthPolicy
    policy = policy_class(args.model, device=args.device, sample_batch=args.sample_batch, dtype=args.dtype)
    settings = SamplingSettings(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.new_tokens)
    prompts = benchmark_prompts()
    names = ["short", "long"] if args.prompts == "both" else [args.prompts]

    warm = SamplingSettings(temperature=args.temperature, top_p=args.top_p, max_new_tokens=2)
    policy.sample_tokens(prompts["short"], 2, warm)
    time_generate(policy, prompts["short"], warm, 2, full_length=True)

    machine = describe_machine()
    result: dict[str, Any] = {"model": args.model, "k": args.k, "new_tokens": args.new_tokens,
                              "temperature": args.temperature, "top_p": args.top_p,
                              "full_length": not args.allow_eos, "device": str(policy.device),
                              "dtype": str(next(policy.model.parameters()).dtype).removeprefix("torch."),
                              "threads": torch.get_num_threads(), "machine": machine, "prompts": {}}
    print(f"model {args.model} on {policy.device} ({result['dtype']}, {result['threads']} threads), K={args.k}, "
          f"{args.new_tokens} new tokens, {'full length' if not args.allow_eos else 'stopping at EOS'}")
    for name in names:
        messages = prompts[name]
        prompt_tokens = len(policy.prompt_ids(policy.prompt_text(messages), args.new_tokens))
        ours = min((time_sampler(policy, messages, settings, args.k) for _ in range(args.repeats)), key=lambda r: r[0])
        theirs = min((time_generate(policy, messages, settings, args.k, not args.allow_eos)
                      for _ in range(args.repeats)), key=lambda r: r[0])
        row = {
            "prompt_tokens": prompt_tokens,
            "sampler_seconds": ours[0], "sampler_tokens": ours[1],
            "sampler_samples_per_s": args.k / ours[0], "sampler_tokens_per_s": ours[1] / ours[0],
            "generate_seconds": theirs[0], "generate_tokens": theirs[1],
            "generate_samples_per_s": args.k / theirs[0], "generate_tokens_per_s": theirs[1] / theirs[0],
            "ratio_samples_per_s": theirs[0] / ours[0],
            "ratio_tokens_per_s": (ours[1] / ours[0]) / (theirs[1] / theirs[0]) if theirs[1] else None,
        }
        if not args.allow_eos:
            # token positions each method runs through the model: generate prefills the prompt once per sample
            row["equal_cost_bound"] = (args.k * prompt_tokens + args.k * args.new_tokens) / (
                prompt_tokens + args.k * args.new_tokens)
        result["prompts"][name] = row
        print(f"{name} prompt ({prompt_tokens} tokens):")
        print(f"  HFPolicy.sample               : {row['sampler_samples_per_s']:8.2f} samples/s "
              f"{row['sampler_tokens_per_s']:9.1f} generated tokens/s ({ours[0]:.2f} s)")
        print(f"  generate(num_return_sequences): {row['generate_samples_per_s']:8.2f} samples/s "
              f"{row['generate_tokens_per_s']:9.1f} generated tokens/s ({theirs[0]:.2f} s)")
        tokens_ratio = f"{row['ratio_tokens_per_s']:.2f}x" if row["ratio_tokens_per_s"] else "n/a"
        print(f"  ratio (sampler / generate): {row['ratio_samples_per_s']:.2f}x samples/s, {tokens_ratio} tokens/s")
        if "equal_cost_bound" in row:
            print(f"  bound if every token position cost the same: {row['equal_cost_bound']:.2f}x "
                  "(both decode the same K x new tokens; only generate's repeated prefills can be saved)")
    print("machine: " + ", ".join(f"{key} {value}" for key, value in machine.items()))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
