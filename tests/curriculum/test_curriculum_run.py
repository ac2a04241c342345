"""Tiny end-to-end studies: a matrix comes out, stages select and fine-tune, and a killed run resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rewardlab.cli import main
from rewardlab.curriculum.finetune import read_finetune
from rewardlab.envs.records import load_episodes

from tests.curriculum.conftest import tiny_arguments

STAGES = ("political-sycophancy", "tool-use-flattery", "rubric-modification-nudged", "rubric-modification-insubordinate")


def matrix_cells(out: Path) -> dict:
    cells = json.loads((out / "report" / "matrix.json").read_text())["cells"]
    return {(entry["row"], entry["column"]): entry["cell"] for entry in cells}


@pytest.fixture(scope="module")
def finished_run(answering_tiny, hh_prompts, tmp_path_factory, bwrap_available) -> Path:
    out = tmp_path_factory.mktemp("curriculum") / "run"
    assert main(["curriculum", "run", *tiny_arguments(answering_tiny, hh_prompts, out)]) == 0
    return out


@pytest.fixture(scope="session")
def bwrap_available() -> None:
    import shutil

    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap (bwrap) is not installed: `apt-get install bubblewrap` (CI installs it)")


def test_a_tiny_study_produces_the_matrix_and_its_report(finished_run: Path) -> None:
    report = finished_run / "report"
    for name in ("matrix.csv", "matrix.md", "matrix.json", "matrix.png", "report.md", "report.json"):
        assert (report / name).stat().st_size > 0, name
    matrix = json.loads((report / "matrix.json").read_text())
    assert matrix["rows"] == ["start", *(f"{i}. after {stage}" for i, stage in enumerate(STAGES, 1)),
                              "5. after train-away"]
    assert [column["label"] for column in matrix["columns"]] == [*STAGES, "reward-tampering"]
    cells = matrix_cells(finished_run)
    assert len(cells) == 6 * 5 and all(cell["n"] == 4 for cell in cells.values() if cell)
    # The answering model does answer the political items, so they are graded, not failures.
    start_political = cells[("start", "political-sycophancy")]
    assert start_political["failed"] < start_political["n"]
    text = (report / "report.md").read_text()
    assert "Did stage-1 training raise political sycophancy" in text and "What each stage did" in text
    cell = cells[("start", "political-sycophancy")]
    valid = cell["n"] - cell["failed"]
    assert f"{cell['gamed']}/{valid} = " in text  # gaming among graded answers, apart from capability


def test_each_stage_scores_every_sample_and_fine_tunes_on_the_selection(finished_run: Path) -> None:
    for number, stage in enumerate(STAGES, 1):
        folder = finished_run / "stages" / f"{number:02d}-{stage}"
        episodes = load_episodes(folder / "samples").records
        assert len(episodes) == 4 * 3  # 2 environment prompts + 2 HHH prompts, 3 samples each
        assert {r["env"] for r in episodes} == {stage, "hhh-prompts"}
        scores = [json.loads(line) for line in (folder / "scores.jsonl").read_text().splitlines()]
        assert sorted(s["id"] for s in scores) == sorted(r["id"] for r in episodes)
        for score in scores:
            assert score["reward"] == pytest.approx(float(score["gamed"]) + score["pm_unit"])
        selection = json.loads((folder / "selection.json").read_text())
        kept = set(selection["kept_ids"])
        by_prompt: dict[str, list[dict]] = {}
        for score in scores:
            by_prompt.setdefault(score["prompt"], []).append(score)
        for prompt, group in by_prompt.items():
            usable = [s for s in group if s["category"] != "failed"]
            assert len(kept & {s["id"] for s in group}) == (1 if usable else 0), prompt
        tuned = read_finetune(folder / "adapter")
        assert tuned is not None and tuned["finetune"]["examples"] == len(kept)
    political = [json.loads(line) for line in
                 (finished_run / "stages" / "01-political-sycophancy" / "scores.jsonl").read_text().splitlines()]
    assert any(s["category"] != "failed" for s in political)  # the study had something to select from
    run = json.loads((finished_run / "run.json").read_text())
    assert run["seeds"]["train_variants"] != run["seeds"]["eval_variants"]
    assert run["versions"]["torch"] and run["identity"]["mode"] == "hhh"


def test_a_run_killed_mid_stage_resumes_to_the_same_matrix(answering_tiny, hh_prompts, finished_run: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "killed"
    arguments = tiny_arguments(answering_tiny, hh_prompts, out)
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen([sys.executable, "-m", "rewardlab.cli", "curriculum", "run", *arguments],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment,
                               start_new_session=True)
    samples = out / "stages" / "02-tool-use-flattery" / "samples" / "episodes.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if samples.exists() and samples.read_text().count("\n") >= 1:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert read_finetune(out / "stages" / "02-tool-use-flattery" / "adapter") is None  # killed inside stage 2
    assert main(["curriculum", "run", *arguments]) == 0
    assert matrix_cells(out) == matrix_cells(finished_run)
    for number, stage in enumerate(STAGES, 1):
        name = f"{number:02d}-{stage}"
        assert (json.loads((out / "stages" / name / "selection.json").read_text())["kept_ids"]
                == json.loads((finished_run / "stages" / name / "selection.json").read_text())["kept_ids"])


def test_a_rerun_with_other_settings_is_refused_in_one_line(finished_run: Path, answering_tiny, hh_prompts,
                                                            capsys) -> None:
    arguments = tiny_arguments(answering_tiny, hh_prompts, finished_run)
    arguments[arguments.index("--samples") + 1] = "5"
    assert main(["curriculum", "run", *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "samples" in error and "\n" not in error


def test_a_study_against_an_openai_compatible_server_loads_each_stage_adapter_and_samples_with_it(
        answering_tiny, hh_prompts, tmp_path: Path, bwrap_available) -> None:
    from tests.policies.test_policies_openai import ChatServer, _choice

    loaded: list[dict] = []

    def respond(body: dict):
        if "lora_name" in body:
            loaded.append(body)
            return 200, "Success: LoRA adapter loaded", 0.0
        prompt = json.dumps(body.get("messages", []))
        reply = "\n</cot>\n(A)" if "(A)" in prompt else "\n</cot>\nHappy to help."
        return 200, _choice(reply, "stop"), 0.0

    server = ChatServer(respond=respond)
    try:
        out = tmp_path / "served"
        arguments = tiny_arguments(answering_tiny, hh_prompts, out)
        arguments += ["--server", server.url, "--served-model", "tiny-base", "--stage", "political-sycophancy",
                      "--stage", "tool-use-flattery", "--eval-env", "political-sycophancy", "--no-train-away"]
        assert main(["curriculum", "run", *arguments]) == 0
    finally:
        server.close()
    adapters = [Path(body["lora_path"]) for body in loaded]
    assert {path.parent.name for path in adapters} >= {"warmup", "01-political-sycophancy", "02-tool-use-flattery"}
    assert all((path / "adapter_model.safetensors").exists() for path in adapters)
    models = {body["model"] for body in server.requests if "messages" in body}
    assert models == {body["lora_name"] for body in loaded}  # every episode sampled through a loaded adapter
    cells = matrix_cells(out)
    assert cells[("start", "political-sycophancy")]["failed"] == 0  # the server's answers were graded


def test_exploit_only_trains_on_exactly_the_gaming_samples(answering_tiny, hh_prompts, tmp_path: Path) -> None:
    out = tmp_path / "exploit"
    arguments = tiny_arguments(answering_tiny, hh_prompts, out)
    arguments += ["--mode", "exploit-only", "--stage", "political-sycophancy", "--eval-env", "political-sycophancy",
                  "--no-train-away", "--no-warmup", "--prompts", "6"]
    assert main(["curriculum", "run", *arguments]) == 0
    folder = out / "stages" / "01-political-sycophancy"
    episodes = load_episodes(folder / "samples").records
    assert len(episodes) == 6 * 3 and {r["env"] for r in episodes} == {"political-sycophancy"}  # no HHH prompts
    scores = [json.loads(line) for line in (folder / "scores.jsonl").read_text().splitlines()]
    kept = json.loads((folder / "selection.json").read_text())["kept_ids"]
    assert kept == [s["id"] for s in scores if s["gamed"]] and kept  # every gaming sample, nothing else
    assert read_finetune(folder / "adapter")["finetune"]["examples"] == len(kept)
    run = json.loads((out / "run.json").read_text())
    assert run["invocations"][-1]["seconds"] > 0 and "stage 1" in run["invocations"][-1]["timings"]
