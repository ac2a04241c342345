"""`rewardlab repro grm` end to end on the tiny random model: tables, plot, resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rewardlab.cli import main
from rewardlab.data.loaders import load_pairs
from rewardlab.models.persistence import load_reward_model
from rewardlab.repro.lm_check import chosen_response_nll
from rewardlab.repro.methods import METHODS
from rewardlab.train.batches import tokenize_pairs

TINY = ["--model", "tiny-random", "--train-pairs", "24", "--heldout-pairs", "12", "--batch-size", "4",
        "--suites", "synthetic-ood", "--eval-limit", "8", "--threads", "1", "--no-progress"]


def _per_seed_accuracy(out: Path, model: str, dataset: str) -> float:
    outcomes = json.loads((out / "evals" / f"{model}.json").read_text())["datasets"][dataset]["outcomes"]
    scored = [o for o in outcomes if o is not None]
    return sum(o == "correct" for o in scored) / len(scored)


def test_full_run_writes_table_json_and_plot(tmp_path, margin_pairs, capsys):
    out = tmp_path / "repro"
    threads = torch.get_num_threads()
    code = main(["repro", "grm", *TINY, "--train-data", str(margin_pairs), "--steps", "2", "--lr", "0.01",
                 "--trainable-top-layers", "1", "--seeds", "0", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert torch.get_num_threads() == threads  # --threads 1 held only during the run
    assert "torch threads 1" in (out / "report.md").read_text()
    report = (out / "report.md").read_text()
    assert "Command: `rewardlab repro grm --out" in report and "--seeds 0 1" in report
    assert "Wall time:" in report and "Environment: rewardlab" in report and "torch 2." in report
    header = next(line for line in report.splitlines() if line.startswith("| method | head | loss |"))
    assert "ID: held-out (n=12)" in header and "synthetic-ood (n=8)" in header and header.endswith("OOD mean |")
    for method in METHODS.values():
        row = next(line for line in report.splitlines() if line.startswith(f"| {method.label} |"))
        assert "n/a" not in row and row.count("[") == 3  # ID, synthetic-ood and the OOD mean, each with an interval
    assert "## Difference from BT" in report and "## Per seed" in report and "## Subsets" in report

    data = json.loads((out / "report.json").read_text())
    assert data["not_applicable"] == {} and data["seeds"] == [0, 1]
    for method in METHODS:
        for column in ("in-distribution", "synthetic-ood"):
            cell = data["accuracy"][method][column]
            assert cell["per_seed"] == [pytest.approx(_per_seed_accuracy(out, f"{method}-seed{s}", column)) for s in (0, 1)]
            assert cell["value"] == pytest.approx(sum(cell["per_seed"]) / 2)
            assert cell["low"] <= cell["value"] <= cell["high"]
        assert data["accuracy"][method]["OOD mean"]["value"] == pytest.approx(data["accuracy"][method]["synthetic-ood"]["value"])
        if method != "bt":
            diff = data["difference_from_bt"][method]["in-distribution"]
            bt = data["accuracy"]["bt"]["in-distribution"]["value"]
            assert diff["value"] == pytest.approx(data["accuracy"][method]["in-distribution"]["value"] - bt)

    png = (out / "accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # The methods really train differently from the same start: same seed, same split, different heads.
    heads = {m: load_file(out / "runs" / m / "seed-0" / "reward_head.safetensors") for m in ("bt", "bt-margin", "grm-sft-linear")}
    first = next(iter(heads["bt"].values()))
    assert all(not next(iter(h.values())).equal(first) for name, h in heads.items() if name != "bt")
    configs = {m: json.loads((out / "runs" / m / "seed-1" / "metrics.json").read_text())["config"] for m in METHODS}
    assert {c["data"] for c in configs.values()} == {str(out / "data" / "train.jsonl")}
    assert {c["seed"] for c in configs.values()} == {1}
    assert (configs["bt-margin"]["loss"], configs["grm-dpo-noref"]["reg"], configs["grm-sft-mlp"]["head"]) == ("margin", "dpo-noref", "mlp")

    # The language-model check: every model and the base, measured on the same held-out tokens; the stored
    # value (computed with the shared frozen-layer cache) equals a plain recomputation.
    nll = data["lm_nll_heldout_chosen"]
    assert set(nll) == {"base"} | {f"{m}-seed{s}" for m in METHODS for s in (0, 1)}
    assert len({v["tokens"] for v in nll.values()}) == 1 and all(0 < v["nll_per_token"] < 20 for v in nll.values())
    assert "## Language-model check" in report
    model, tokenizer, _ = load_reward_model(out / "runs" / "grm-sft-linear" / "seed-1")
    items = tokenize_pairs(tokenizer, load_pairs(str(out / "data" / "heldout.jsonl")), max_length=256, truncation="drop")
    assert chosen_response_nll(model, items)[0] == pytest.approx(nll["grm-sft-linear-seed1"]["nll_per_token"], abs=1e-4)


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()}


def test_killed_run_resumes_without_redoing_finished_models(tmp_path, capsys):
    out = tmp_path / "repro"
    args = ["repro", "grm", *TINY, "--train-data", "synthetic", "--steps", "6", "--lora",
            "--methods", "bt", "bt-margin", "grm-sft-linear", "--seeds", "0", "1", "--out", str(out)]
    process = subprocess.Popen([sys.executable, "-m", "rewardlab.cli", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (out / "evals" / "bt-seed0.json").exists():
            assert process.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "no model finished within 300 s"
            time.sleep(0.05)
        assert process.poll() is None
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert not (out / "report.md").exists()
    finished = _mtimes(out / "runs" / "bt" / "seed-0")
    cached_eval = (out / "evals" / "bt-seed0.json").stat().st_mtime_ns

    capsys.readouterr()
    assert main(args) == 0
    log = capsys.readouterr().out
    assert "runs/bt/seed-0: already trained" in log and "bt-seed0: evaluation reused" in log
    assert "BT + margin: n/a: no margins in the data; not trained" in log
    assert _mtimes(out / "runs" / "bt" / "seed-0") == finished
    assert (out / "evals" / "bt-seed0.json").stat().st_mtime_ns == cached_eval
    for name in ("bt", "grm-sft-linear"):
        for seed in (0, 1):
            assert (out / "runs" / name / f"seed-{seed}" / "adapter_model.safetensors").exists()
            assert json.loads((out / "runs" / name / f"seed-{seed}" / "metrics.json").read_text())["steps"] == 6
    report = (out / "report.md").read_text()
    margin_row = next(line for line in report.splitlines() if line.startswith("| BT + margin |"))
    assert margin_row.count("n/a: no margins in the data") == 3
    assert "over 2 invocation(s)" in report
    first_numbers = json.loads((out / "report.json").read_text())["accuracy"]

    nll_stored = (out / "evals" / "lm-nll.json").stat().st_mtime_ns
    assert main(args) == 0  # a third run has nothing left to do
    log = capsys.readouterr().out
    assert "4 models (0 still to train)" in log and log.count("evaluation reused") == 4
    assert (out / "evals" / "lm-nll.json").stat().st_mtime_ns == nll_stored  # the language-model check too
    assert json.loads((out / "report.json").read_text())["accuracy"] == first_numbers

    changed = [a if a != "6" else "5" for a in args]
    assert main(changed) == 2
    assert "steps: 6 -> 5" in capsys.readouterr().err
