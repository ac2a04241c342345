"""`rewardlab envs export-inspect`: a run folder as an Inspect eval log, read back by Inspect and shown by `inspect view`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("inspect_ai", reason="the Inspect integration needs inspect_ai: pip install 'rewardlab[inspect]'")

from inspect_ai.log import read_eval_log  # noqa: E402

from rewardlab.cli import main  # noqa: E402
from rewardlab.envs import make_environment, run_episodes  # noqa: E402
from rewardlab.envs.records import EPISODES_FILE, append_json_line, load_episodes  # noqa: E402
from rewardlab.envs.report import report_folder  # noqa: E402
from rewardlab.envs.sandbox import BubblewrapSandbox, SandboxLimits  # noqa: E402
from rewardlab.integrations.inspect._convert import SCORER_NAME, from_chat  # noqa: E402
from rewardlab.integrations.inspect.export import default_output, export_run  # noqa: E402
from rewardlab.integrations.inspect.view import sample_url, serve_view  # noqa: E402
from rewardlab.policies import ScriptedPolicy  # noqa: E402

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap"),
]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run: two environments, a scripted tamperer, bubblewrap."""
    folder = tmp_path_factory.mktemp("export-run") / "run"
    bwrap_sandbox = BubblewrapSandbox(SandboxLimits(command_timeout=4.0, cpu_seconds=4))
    envs = [make_environment("reward-tampering"), make_environment("political-sycophancy")]
    summary = run_episodes(envs, ScriptedPolicy("tamper-and-evade"), "scripted:tamper-and-evade", bwrap_sandbox, n=2,
                           seed=5, out_dir=folder, workers=2, progress=False)
    assert summary.finished == 4
    return folder


def _assert_log_equals_records(log_path: Path, records: list[dict]) -> None:
    log = read_eval_log(str(log_path))
    assert log.status == "success"
    by_id = {sample.id: sample for sample in log.samples}
    assert sorted(by_id) == sorted(record["id"] for record in records)
    for record in records:
        sample = by_id[record["id"]]
        score = sample.scores[SCORER_NAME]
        assert from_chat(sample.messages) == record["messages"]
        assert (score.value, score.answer) == (record["outcome"], record["final_answer"])
        assert score.metadata["details"] == record["details"]
        assert score.metadata["commands"] == record["commands"] and score.metadata["gamed"] == record["gamed"]
        assert sample.metadata["env"] == record["env"] and sample.metadata["index"] == record["index"]
        assert [event.event for event in sample.events].count("model") == sum(
            1 for m in record["messages"][len(from_chat(sample.input)):] if m["role"] == "assistant")


def test_export_writes_one_sample_per_episode_that_inspect_reads_back(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "log.eval"
    assert main(["envs", "export-inspect", str(run_dir), "--out", str(out)]) == 0
    assert f"4 episode(s) -> {out}" in capsys.readouterr().out
    records = load_episodes(run_dir).records
    _assert_log_equals_records(out, records)
    log = read_eval_log(str(out))
    assert log.eval.model == "scripted:tamper-and-evade" and log.eval.task == "rewardlab/envs"
    # The metrics are the report's rates and exact intervals, per environment.
    table, _, _ = report_folder(run_dir)
    metrics = log.results.scores[0].metrics
    for env, rows in table.items():
        for outcome, rate in rows.items():
            assert metrics[f"{env}/{outcome}"].value == pytest.approx(rate.rate)
            assert metrics[f"{env}/{outcome}_ci_low"].value == pytest.approx(rate.ci_low)
            assert metrics[f"{env}/{outcome}_ci_high"].value == pytest.approx(rate.ci_high)


def test_bad_lines_and_broken_records_are_counted_never_lost(run_dir: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "damaged"
    shutil.copytree(run_dir, folder)
    records = load_episodes(folder).records
    with open(folder / EPISODES_FILE, "a", encoding="utf-8") as handle:
        handle.write('{"id": "cut-off-by-a-crash", "outcome": \n')
    append_json_line(folder / EPISODES_FILE, dict(records[0]))  # the same id again
    minimal = {"id": "reward-tampering-s5-00099", "env": "reward-tampering", "index": 99, "seed": 5, "outcome": "reward_error",
               "gamed": False, "details": {"error": "the episode record could not be built"}}
    append_json_line(folder / EPISODES_FILE, minimal)
    out = tmp_path / "log.json"
    assert main(["envs", "export-inspect", str(folder), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "5 episode(s)" in captured.out
    assert "1 unreadable line(s)" in captured.err and "1 record(s) skipped" in captured.err
    assert "1 record(s) exported without a whole transcript" in captured.err
    assert "reward-tampering-s5-00099: no transcript" in captured.err
    json.loads(out.read_text())  # the .json form is plain JSON
    log = read_eval_log(str(out))
    assert sorted(s.id for s in log.samples) == sorted([r["id"] for r in records] + ["reward-tampering-s5-00099"])
    minimal_sample = next(s for s in log.samples if s.id == "reward-tampering-s5-00099")
    assert minimal_sample.scores[SCORER_NAME].value == "reward_error" and minimal_sample.messages == []
    assert log.eval.metadata["unreadable_lines"] == 1 and log.eval.metadata["skipped_records"] == 1


def test_export_refuses_what_it_cannot_write(run_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["envs", "export-inspect", str(run_dir), "--out", str(tmp_path / "log.txt")]) == 2
    assert "must end in .eval or .json" in capsys.readouterr().err
    assert main(["envs", "export-inspect", str(tmp_path / "nothing-here")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / EPISODES_FILE).write_text("not json\n")
    assert main(["envs", "export-inspect", str(empty)]) == 2
    assert "holds no exportable episodes" in capsys.readouterr().err


def test_default_output_sits_in_the_run_folder(run_dir: Path) -> None:
    summary = export_run(run_dir)
    assert summary.path == default_output(run_dir) == run_dir / "inspect" / "run.eval"
    assert summary.samples == 4 and summary.path.exists()
    assert not [p for p in summary.path.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_missing_inspect_ai_is_a_one_line_error() -> None:
    code = ("import sys; sys.modules['inspect_ai'] = None\n"
            "from rewardlab.cli import main\n"
            "sys.exit(main(['envs', 'export-inspect', 'some-run']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "pip install 'rewardlab[inspect]'" in lines[0]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)")
def test_inspect_view_shows_the_exported_transcript_in_a_real_browser(run_dir: Path, tmp_path: Path) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("this test drives /usr/bin/chromium with playwright: pip install playwright (no browser download)")
    logs = tmp_path / "logs"
    export_run(run_dir, logs / "run.eval")
    record = next(r for r in load_episodes(run_dir).records if r["env"] == "reward-tampering")
    last_reply = record["messages"][-1]["content"].split("\n")[-1]
    with serve_view(logs) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                                 headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(sample_url(base, "run.eval", record["id"], tab="messages"))
            # The message list: the demonstration turn of the transcript, rendered once the sample has loaded.
            page.get_by_text("When is the team offsite?").first.wait_for(timeout=60_000)
            body = page.inner_text("body")
            assert record["id"] in body and record["outcome"] in body  # the header: sample id and score
            assert last_reply in body  # the answer the policy ended with
            assert record["messages"][1]["content"].split("\n")[1] in body  # the acknowledgement turn
        finally:
            browser.close()
