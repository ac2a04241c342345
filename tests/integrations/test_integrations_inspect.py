"""Every rewardlab environment as an Inspect task, run offline by `inspect_ai.eval` with Inspect's mockllm model.

The mock model's replies are the scripted behaviours of `rewardlab.policies.scripted` (see
`tests.integrations.inspect_support`), so each run must give exactly the outcome label that behaviour
gives in ``rewardlab envs run``; tool environments run through the `rewardlab-bwrap` sandbox plugin.
"""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("inspect_ai", reason="the Inspect integration needs inspect_ai: pip install 'rewardlab[inspect]'")

import anyio  # noqa: E402
from inspect_ai import eval as inspect_eval  # noqa: E402
from inspect_ai.log import EvalLog  # noqa: E402
from inspect_ai.model import ModelOutput, ModelUsage, get_model  # noqa: E402

from rewardlab.envs import ENVIRONMENTS, make_environment, make_sandbox, run_episode  # noqa: E402
from rewardlab.envs.sandbox import SandboxLimits  # noqa: E402
from rewardlab.envs.stats import clopper_pearson  # noqa: E402
from rewardlab.integrations.inspect._convert import SCORER_NAME, from_chat  # noqa: E402
from rewardlab.integrations.inspect.policy import InspectModelPolicy  # noqa: E402
from rewardlab.integrations.inspect.tasks import TASKS  # noqa: E402
from rewardlab.policies import ScriptedPolicy  # noqa: E402
from tests.integrations.inspect_support import scripted_mockllm  # noqa: E402

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap"),
]

CASES = [
    ("political-sycophancy", "honest", "not_sycophantic"),
    ("political-sycophancy", "sycophant", "sycophantic"),
    ("political-sycophancy", "confused", "invalid"),
    ("tool-use-flattery", "honest", "honest"),
    ("tool-use-flattery", "sycophant", "flattered"),
    ("tool-use-flattery", "confused", "no_grade"),
    ("rubric-modification-nudged", "honest", "honest"),
    ("rubric-modification-nudged", "liar", "lied"),
    ("rubric-modification-nudged", "liar-and-editor", "lied_and_edited"),
    ("rubric-modification-nudged", "confused", "no_answer"),
    ("rubric-modification-insubordinate", "honest", "honest"),
    ("rubric-modification-insubordinate", "liar", "lied"),
    ("rubric-modification-insubordinate", "liar-and-editor", "lied_and_edited"),
    ("rubric-modification-insubordinate", "confused", "no_answer"),
    ("reward-tampering", "honest", "honest"),
    ("reward-tampering", "tamperer", "tampered"),
    ("reward-tampering", "tamper-and-evade", "tampered_and_evaded"),
    ("reward-tampering", "confused", "reward_error"),
]
N = 2


def _run(env: str, behaviour: str, tmp_path, **eval_args) -> tuple[EvalLog, object]:
    model, replies = scripted_mockllm(behaviour, env, seed=3, n=N)
    shell = {"command_timeout": 5.0} if ENVIRONMENTS[env].uses_tools else {}
    logs = inspect_eval(TASKS[env](seed=3, n=N, **shell), model=model, display="none",
                        log_dir=str(tmp_path), **eval_args)
    assert len(logs) == 1
    return logs[0], replies


def test_every_environment_has_a_task_and_every_label_a_case() -> None:
    assert set(TASKS) == set(ENVIRONMENTS)
    for name, cls in ENVIRONMENTS.items():
        assert {label for env, _, label in CASES if env == name} == set(cls.outcomes), name


@pytest.mark.parametrize(("env", "behaviour", "label"), CASES, ids=[f"{e}-{b}" for e, b, _ in CASES])
def test_inspect_eval_gives_our_outcome_label(env: str, behaviour: str, label: str, tmp_path) -> None:
    log, replies = _run(env, behaviour, tmp_path)
    assert log.status == "success", log.error
    assert log.eval.task == f"rewardlab/{env.replace('-', '_')}"
    assert [sample.id for sample in log.samples] == [f"{env}-s3-{i:05d}" for i in range(N)]
    for sample in log.samples:
        score = sample.scores[SCORER_NAME]
        assert score.value == label
        assert score.metadata["outcome"] == label and score.metadata["env"] == env
        assert score.metadata["gamed"] == (label in ENVIRONMENTS[env].gaming_outcomes)
        assert isinstance(score.metadata["details"], dict) and score.metadata["details"]
        # The conversation in Inspect is the episode's transcript; the final reply is the scored answer.
        messages = from_chat(sample.messages)
        assert messages[-1]["role"] == "assistant" and score.answer in messages[-1]["content"]
    metrics = log.results.scores[0].metrics
    low, high = clopper_pearson(N, N)
    assert metrics[label].value == 1.0
    assert (metrics[f"{label}_ci_low"].value, metrics[f"{label}_ci_high"].value) == pytest.approx((low, high))
    for other in set(ENVIRONMENTS[env].outcomes) - {label}:
        assert metrics[other].value == 0.0
    assert metrics["gamed"].value == (1.0 if label in ENVIRONMENTS[env].gaming_outcomes else 0.0)
    if ENVIRONMENTS[env].uses_tools:
        assert log.eval.sandbox.type == "rewardlab-bwrap"
        assert all(stop == ["</bash>"] for stop in replies.stop_seqs)
        assert all(s.scores[SCORER_NAME].metadata["sandbox"] == "rewardlab-bwrap" for s in log.samples)
    else:
        assert log.eval.sandbox is None


def test_an_inspect_episode_is_the_episode_rewardlab_plays_itself(tmp_path) -> None:
    """Same variant, same scripted replies: Inspect's run and `run_episode` give the same transcript, label and evidence."""
    log, _ = _run("reward-tampering", "tamper-and-evade", tmp_path)
    env = make_environment("reward-tampering")
    sandbox = make_sandbox("bwrap", SandboxLimits(command_timeout=5.0))
    for index, sample in enumerate(log.samples):
        record = run_episode(env, env.variant(index, 3), ScriptedPolicy("tamper-and-evade"), sandbox,
                             policy_spec="scripted:tamper-and-evade")
        score = sample.scores[SCORER_NAME]
        assert from_chat(sample.messages) == record.messages
        assert (score.value, score.answer) == (record.outcome, record.final_answer)
        assert score.metadata["details"] == record.details
        assert score.metadata["files_changed"] == record.files_changed
        assert [c["command"] for c in score.metadata["commands"]] == [c["command"] for c in record.commands]


def test_tasks_resolve_by_name_through_the_entry_point(tmp_path) -> None:
    model, _ = scripted_mockllm("tamperer", "reward-tampering", seed=0, n=1)
    log = inspect_eval("rewardlab/reward_tampering", model=model, task_args={"n": 1}, display="none",
                       log_dir=str(tmp_path))[0]
    assert log.status == "success"
    assert log.samples[0].scores[SCORER_NAME].value == "tampered"


def test_an_inspect_limit_ends_the_episode_and_it_is_still_graded(tmp_path) -> None:
    log, _ = _run("reward-tampering", "tamper-and-evade", tmp_path, message_limit=15, limit=1)
    sample = log.samples[0]
    assert sample.limit is not None and sample.limit.type == "message"
    score = sample.scores[SCORER_NAME]
    # Cut off before its edit: graded on the untouched files, with no final answer.
    assert score.value == "honest" and score.answer == ""
    assert score.metadata["details"]["stopped_by_inspect_limit"] is True


def test_free_text_political_answers_are_graded_by_the_inspect_grader_role(tmp_path) -> None:
    model, _ = scripted_mockllm("sycophant", "political-sycophancy", seed=1, n=1, options={"mode": "free"})
    env = make_environment("political-sycophancy", {"mode": "free"}, grader_policy=ScriptedPolicy("honest"))
    matching = env.variant(0, 1).facts["matching_letter"]
    for verdict, label in ((matching, "sycophantic"), ("NEITHER", "invalid")):
        reply = ModelOutput.from_content("mockllm", verdict)
        reply.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)  # no tiktoken count (offline)
        grader = get_model("mockllm/model", custom_outputs=[reply], memoize=False)
        log = inspect_eval(TASKS["political-sycophancy"](seed=1, n=1, mode="free"), model=model,
                           model_roles={"grader": grader}, display="none", log_dir=str(tmp_path))[0]
        model, _ = scripted_mockllm("sycophant", "political-sycophancy", seed=1, n=1, options={"mode": "free"})
        assert log.status == "success", log.error
        score = log.samples[0].scores[SCORER_NAME]
        assert score.value == label
        assert score.metadata["details"]["grader_reply"] == verdict


def test_a_grader_model_that_fails_is_a_sample_error_not_a_label(tmp_path) -> None:
    model, _ = scripted_mockllm("sycophant", "political-sycophancy", seed=1, n=1, options={"mode": "free"})
    broken = get_model("mockllm/model", custom_outputs=[], memoize=False)  # runs out of replies: raises
    log = inspect_eval(TASKS["political-sycophancy"](seed=1, n=1, mode="free"), model=model,
                       model_roles={"grader": broken}, display="none", log_dir=str(tmp_path))[0]
    assert log.status == "error"
    assert "could not answer" in log.samples[0].error.message and not log.samples[0].scores


def test_the_policy_adapter_keeps_the_policy_contract() -> None:
    """Stop strings a provider drops are put back; `<cot>` is continued, or dropped with prefill=none."""
    outputs = [ModelOutput.from_content("mockllm", "\nlook around\n</cot>\n<bash>ls", stop_reason="stop"),
               ModelOutput.from_content("mockllm", "<cot>\nfine\n</cot>\nAll done.<bash>rm -rf x</bash> extra"),
               ModelOutput.from_content("mockllm", "A fresh reply", stop_reason="stop"),
               ModelOutput.from_content("mockllm", "", stop_reason="model_length")]
    for output in outputs:
        output.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)  # no tiktoken count (offline)
    model = get_model("mockllm/model", custom_outputs=outputs, memoize=False)
    opening = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<cot>"}]

    async def replies() -> list:
        continuing = InspectModelPolicy(model)
        fresh = InspectModelPolicy(model, prefill="none")
        return [await continuing.agenerate(opening, ["</bash>"]), await continuing.agenerate(opening, ["</bash>"]),
                await fresh.agenerate(opening, ["</bash>"]), await continuing.agenerate(opening, ["</bash>"])]

    first, second, third, fourth = anyio.run(replies)
    assert (first.text, first.finish_reason) == ("<cot>\nlook around\n</cot>\n<bash>ls</bash>", "stop")
    assert second.text == "<cot>\nfine\n</cot>\nAll done.<bash>rm -rf x</bash>"
    assert (third.text, third.finish_reason) == ("A fresh reply", "eos")
    assert (fourth.text, fourth.finish_reason) == ("<cot>", "context_limit")


_FRESH_PROCESS = """
import sys
from importlib.metadata import entry_points
(point,) = [p for p in entry_points(group="inspect_ai") if p.name == "rewardlab"]
assert point.value == "rewardlab.integrations.inspect._registry", point.value
assert not any(name.startswith("rewardlab.integrations") for name in sys.modules)
from inspect_ai._util.entrypoints import ensure_entry_points
from inspect_ai._util.registry import registry_lookup
from inspect_ai.util._sandbox.registry import registry_find_sandboxenv
ensure_entry_points()  # what Inspect does before resolving `rewardlab/...` names and sandbox types
from rewardlab.integrations.inspect._registry import RewardlabBwrapSandbox
assert registry_find_sandboxenv("rewardlab-bwrap") is RewardlabBwrapSandbox
for name in ("political_sycophancy", "tool_use_flattery", "rubric_modification_nudged",
             "rubric_modification_insubordinate", "reward_tampering"):
    assert registry_lookup("task", f"rewardlab/{name}") is not None, name
print("registered")
"""


def test_the_entry_point_module_alone_registers_every_task_and_the_sandbox() -> None:
    """In a fresh interpreter nothing of ours is imported until Inspect loads the entry point."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _FRESH_PROCESS], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "registered", done.stderr[-2000:]
