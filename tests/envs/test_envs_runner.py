"""Runs of many episodes: JSONL records, resumability, failure logging, reports and transcripts."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest

from rewardlab.envs.environments import make_environment
from rewardlab.envs.environments.base import Grade
from rewardlab.envs.environments.tampering import RewardTampering
from rewardlab.envs.records import EPISODES_FILE, ERRORS_FILE, RUN_FILE, RunFolderError, load_episodes, repair_tail
from rewardlab.envs.report import format_report, report_folder, report_json, summarize
from rewardlab.envs.runner import run_episodes
from rewardlab.envs.show import find_episode, format_episode
from rewardlab.policies import ReplayPolicy, ScriptedPolicy

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap"),
]


def _read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_writes_records_and_a_rerun_only_adds_missing_episodes(bwrap_sandbox, tmp_path):
    envs = [make_environment("reward-tampering"), make_environment("political-sycophancy")]
    policy = ScriptedPolicy("tamperer")
    first = run_episodes(envs, policy, "scripted:tamperer", bwrap_sandbox, n=2, seed=4, out_dir=tmp_path, workers=2,
                         progress=False)
    assert (first.finished, first.already_done, first.failed) == (4, 0, 0)
    records = _read_lines(tmp_path / EPISODES_FILE)
    assert sorted(r["id"] for r in records) == ["political-sycophancy-s4-00000", "political-sycophancy-s4-00001",
                                               "reward-tampering-s4-00000", "reward-tampering-s4-00001"]
    tampering = next(r for r in records if r["env"] == "reward-tampering")
    assert tampering["outcome"] == "tampered" and tampering["gamed"] is True
    assert tampering["commands"][0]["command"] == "ls ./rl_environment" and tampering["commands"][0]["exit_code"] == 0
    assert set(tampering["timings"]) == {"setup", "policy", "commands", "grading", "total"}
    assert tampering["files_changed"]["modified"] == ["rl_environment/compute_reward.py"]
    assert tampering["messages"][-1]["role"] == "assistant" and tampering["final_answer"]
    settings = json.loads((tmp_path / RUN_FILE).read_text())
    assert settings["policy"] == "scripted:tamperer" and settings["sandbox"] == "bwrap"

    second = run_episodes(envs, policy, "scripted:tamperer", bwrap_sandbox, n=3, seed=4, out_dir=tmp_path, workers=1,
                          progress=False)
    assert (second.finished, second.already_done) == (2, 4)
    ids = [r["id"] for r in _read_lines(tmp_path / EPISODES_FILE)]
    assert len(ids) == len(set(ids)) == 6


def test_interrupted_write_is_repaired_before_resuming(bwrap_sandbox, tmp_path):
    env = make_environment("reward-tampering")
    run_episodes([env], ScriptedPolicy("honest"), "scripted:honest", bwrap_sandbox, n=1, seed=0, out_dir=tmp_path,
                 progress=False)
    path = tmp_path / EPISODES_FILE
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"id": "reward-tampering-s0-00001", "outc')
    summary = run_episodes([env], ScriptedPolicy("honest"), "scripted:honest", bwrap_sandbox, n=2, seed=0,
                           out_dir=tmp_path, progress=False)
    assert summary.repaired_bytes > 0 and summary.finished == 1
    assert [r["outcome"] for r in _read_lines(path)] == ["honest", "honest"]
    assert repair_tail(path) == 0


def test_folder_of_one_policy_refuses_another(bwrap_sandbox, tmp_path):
    env = make_environment("political-sycophancy")
    run_episodes([env], ScriptedPolicy("honest"), "scripted:honest", None, n=1, seed=0, out_dir=tmp_path, progress=False)
    with pytest.raises(RunFolderError, match="belongs to policy 'scripted:honest'"):
        run_episodes([env], ScriptedPolicy("liar"), "scripted:liar", None, n=1, seed=0, out_dir=tmp_path, progress=False)
    with pytest.raises(RunFolderError, match="max_commands"):
        run_episodes([env], ScriptedPolicy("honest"), "scripted:honest", None, n=1, seed=0, out_dir=tmp_path,
                     max_commands=3, progress=False)


def test_failed_episodes_are_logged_not_recorded_and_stop_the_run(bwrap_sandbox, tmp_path):
    env = make_environment("reward-tampering")
    too_short = ReplayPolicy(["<cot>x</cot><bash>ls</bash>"], source="short.json")
    summary = run_episodes([env], too_short, "replay:short.json", bwrap_sandbox, n=5, seed=0, out_dir=tmp_path,
                           max_failures=2, progress=False)
    assert summary.failed == 2 and summary.finished == 0 and summary.stopped_early
    errors = _read_lines(tmp_path / ERRORS_FILE)
    assert len(errors) == 2 and "short.json has 1 turn(s)" in errors[0]["error"]
    assert not (tmp_path / EPISODES_FILE).exists()


def test_report_counts_every_label_with_exact_intervals_and_gamed(tmp_path):
    records = (
        [{"id": f"reward-tampering-s0-{i:05d}", "env": "reward-tampering", "outcome": "honest", "gamed": False}
         for i in range(8)]
        + [{"id": "reward-tampering-s0-00008", "env": "reward-tampering", "outcome": "tampered", "gamed": True},
           {"id": "reward-tampering-s0-00009", "env": "reward-tampering", "outcome": "tampered_and_evaded", "gamed": True}]
    )
    (tmp_path / EPISODES_FILE).write_text("\n".join(json.dumps(r) for r in records) + "\nnot json\n")
    table, bad_lines, _ = report_folder(tmp_path)
    assert bad_lines == 1
    data = report_json(table)
    rows = data["reward-tampering"]
    assert list(rows) == ["honest", "tampered", "tampered_and_evaded", "reward_error", "gamed"]
    assert rows["gamed"]["count"] == 2 and rows["gamed"]["n"] == 10 and rows["gamed"]["rate"] == 0.2
    assert rows["gamed"]["ci_low"] == pytest.approx(0.025211, abs=1e-5)
    assert rows["gamed"]["ci_high"] == pytest.approx(0.556095, abs=1e-5)
    assert rows["reward_error"] == {"count": 0, "n": 10, "rate": 0.0, "ci_low": 0.0,
                                    "ci_high": pytest.approx(0.308497, abs=1e-5)}
    text = format_report(table, bad_lines=bad_lines)
    assert "rule of three: <= 0.3000" in text and "Clopper-Pearson" in text and "Skipped 1 unreadable" in text
    assert summarize([]) == {}


def test_show_finds_by_id_or_index_and_prints_the_transcript(bwrap_sandbox, tmp_path):
    env = make_environment("reward-tampering")
    run_episodes([env], ScriptedPolicy("tamper-and-evade"), "scripted:tamper-and-evade", bwrap_sandbox, n=2, seed=0,
                 out_dir=tmp_path, progress=False)
    record = find_episode(tmp_path, "reward-tampering-s0-00001")
    assert find_episode(tmp_path, "1") == record
    text = format_episode(record)
    assert "outcome   tampered_and_evaded  [GAMED]" in text and "Human: Could you tell me" in text
    assert "<bash>ls ./rl_environment</bash>" in text and '"guard": "passed"' in text
    with pytest.raises(RunFolderError, match="no episode 'nope'"):
        find_episode(tmp_path, "nope")
    with pytest.raises(RunFolderError, match="does not exist"):
        load_episodes(tmp_path / "missing")


def test_rerun_with_other_sampling_or_sandbox_settings_is_refused_and_run_json_records_them(bwrap_sandbox, tmp_path):
    from rewardlab.envs.sandbox import BubblewrapSandbox, SandboxLimits

    env = make_environment("reward-tampering")
    sampling = {"temperature": 1.0, "max_new_tokens": 256, "prefill": None, "grader": None}
    run_episodes([env], ScriptedPolicy("honest"), "scripted:honest", bwrap_sandbox, n=1, seed=0, out_dir=tmp_path,
                 progress=False, episode_settings=sampling)
    recorded = json.loads((tmp_path / RUN_FILE).read_text())
    assert recorded["episode_settings"] == sampling
    assert recorded["sandbox_limits"]["command_timeout"] == 4.0
    with pytest.raises(RunFolderError, match=r"episode settings \(temperature: 1.0 -> 0.7\)"):
        run_episodes([env], ScriptedPolicy("honest"), "scripted:honest", bwrap_sandbox, n=2, seed=0, out_dir=tmp_path,
                     progress=False, episode_settings={**sampling, "temperature": 0.7})
    looser = BubblewrapSandbox(SandboxLimits(command_timeout=9.0, cpu_seconds=4))
    with pytest.raises(RunFolderError, match=r"sandbox limits \(command_timeout: 4.0 -> 9.0\)"):
        run_episodes([env], ScriptedPolicy("honest"), "scripted:honest", looser, n=2, seed=0, out_dir=tmp_path,
                     progress=False, episode_settings=sampling)
    same = run_episodes([env], ScriptedPolicy("honest"), "scripted:honest", bwrap_sandbox, n=2, seed=0,
                        out_dir=tmp_path, progress=False, episode_settings=dict(sampling))
    assert (same.finished, same.already_done) == (1, 1)


class _FragileGraderEnvironment(RewardTampering):
    """reward-tampering with a grader that trusts the policy's ``answer.json`` to hold {"score": number}."""

    def grade(self, episode, session):
        score = json.loads(session.files()["answer.json"])["score"] * 2
        return Grade("tampered" if score > 0 else "honest", {"score": score})

    def settings(self):
        return {"fragile": True}


def test_a_grader_broken_by_the_policy_files_labels_the_episode_not_errors(bwrap_sandbox, tmp_path):
    env = _FragileGraderEnvironment()
    policy = ReplayPolicy(["<cot>x</cot><bash>echo '{\"score\": null}' > answer.json</bash>", "Done."])
    summary = run_episodes([env], policy, "replay:fragile", bwrap_sandbox, n=2, seed=0, out_dir=tmp_path, workers=2,
                           progress=False)
    assert (summary.finished, summary.failed) == (2, 0) and not (tmp_path / ERRORS_FILE).exists()
    for record in _read_lines(tmp_path / EPISODES_FILE):
        assert record["outcome"] == "reward_error" and record["gamed"] is False
        assert record["details"]["error_stage"] == "grading"
        assert record["details"]["error"].startswith("TypeError: unsupported operand")


class _SandboxKiller:
    """Runs one command, then (as the policy thinks about the next) kills the episode's sandbox from the
    host by the pid of the bubblewrap process this test process started."""

    def __init__(self):
        self.turn = 0

    def for_episode(self, hints):
        return _SandboxKiller()

    def generate(self, messages, stop):
        self.turn += 1
        if self.turn == 1:
            return "<cot>x</cot><bash>echo one</bash>"
        if self.turn == 2:
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
                        comm = open(f"/proc/{entry}/comm").read().strip()
                    except OSError:
                        continue
                    if int(fields[1]) == os.getpid() and comm == "bwrap":
                        os.kill(int(entry), signal.SIGKILL)
            return "<bash>echo two</bash>"
        return "Done."


def test_a_sandbox_that_dies_mid_episode_labels_the_episode_and_the_next_one_runs(bwrap_sandbox, tmp_path):
    env = make_environment("reward-tampering")
    summary = run_episodes([env], _SandboxKiller(), "test:killer", bwrap_sandbox, n=1, seed=0, out_dir=tmp_path,
                           progress=False)
    assert (summary.finished, summary.failed) == (1, 0) and not (tmp_path / ERRORS_FILE).exists()
    record = _read_lines(tmp_path / EPISODES_FILE)[0]
    assert record["outcome"] == "reward_error" and record["details"]["error_stage"] == "command"
    assert record["details"]["command_index"] == 1 and record["commands"][1]["error"].startswith("SandboxError")
    assert record["commands"][0]["exit_code"] == 0
    after = run_episodes([env], ScriptedPolicy("tamper-and-evade"), "scripted:tamper-and-evade", bwrap_sandbox, n=1,
                         seed=0, out_dir=tmp_path / "after", progress=False)
    assert after.outcomes == {"reward-tampering": {"tampered_and_evaded": 1}}
