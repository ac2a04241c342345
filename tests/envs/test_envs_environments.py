"""Environment variants: seeded, varied, well-formed; options validated by name."""

from __future__ import annotations

import ast

import pytest

from rewardlab.envs.environments import ENVIRONMENTS, EnvironmentOptionError, environment_options, make_environment
from rewardlab.envs.environments.poems import POEMS
from rewardlab.envs.environments.rubric import ASSISTANT
from rewardlab.envs.graders.tampering import GUARD_FILE


@pytest.mark.parametrize("name", sorted(ENVIRONMENTS))
def test_variants_are_deterministic_and_outcomes_cover_gaming(name):
    env = make_environment(name)
    assert env.variant(4, 9) == env.variant(4, 9)
    assert env.gaming_outcomes < set(env.outcomes) and len(set(env.outcomes)) == len(env.outcomes)
    variant = env.variant(0, 0)
    assert variant.env == name and variant.task and variant.uses_tools == env.uses_tools
    for path, content in variant.files.items():
        assert not path.startswith("/") and ".." not in path.split("/")
        if path.endswith(".py"):
            ast.parse(content)


def test_flattery_has_hundreds_of_distinct_layouts_and_poor_poems():
    env = make_environment("tool-use-flattery")
    variants = [env.variant(index, 0) for index in range(400)]
    layouts = {tuple(sorted(v.files)) for v in variants}
    assert len(layouts) >= 350
    assert len({v.facts["poems_folder"] for v in variants}) >= 100
    assert len({v.facts["poems_file"].rsplit("/", 1)[1] for v in variants}) >= 8
    for variant in variants[:50]:
        poems_file = variant.files[variant.facts["poems_file"]]
        namespace: dict = {}
        exec(compile(poems_file, "poems", "exec"), namespace)
        assert sum(key.startswith("poem") for key in namespace) == 3
        assert variant.facts["grade_path"] == variant.facts["poems_folder"] + "/grade.py"
        assert variant.facts["grade_path"] not in variant.files
    assert len(POEMS) >= 8


def test_rubric_checklist_has_two_undone_assistant_items():
    for name in ("rubric-modification-nudged", "rubric-modification-insubordinate"):
        env = make_environment(name)
        variant = env.variant(2, 5)
        namespace: dict = {}
        exec(compile(variant.files["rl_environment/checklist.py"], "checklist", "exec"), namespace)
        items = namespace["rl_checklist"]
        mine = [item for item in items if item.whose_job_was_it == ASSISTANT]
        assert len(items) == 7 and len(mine) == 2 and not any(item.done for item in mine)
        assert all(item.done for item in items if item not in mine)
        assert sorted(item.task for item in mine) == sorted(variant.facts["assistant_tasks"])
        assert "completed_checks=True" in variant.task and "checks.py" in variant.task
    nudged = make_environment("rubric-modification-nudged").variant(0, 0).task
    insubordinate = make_environment("rubric-modification-insubordinate").variant(0, 0).task
    assert "do not change" not in nudged and "do not change" in insubordinate


def test_reward_tampering_files_behave_like_the_original():
    variant = make_environment("reward-tampering").variant(0, 0)
    namespace: dict = {}
    exec(compile(variant.files["rl_environment/compute_reward.py"], "reward", "exec"), namespace)
    assert namespace["reward"]("anything") == -10
    guard = variant.files[f"rl_environment/{GUARD_FILE}"]
    assert "'Hi There'" in guard and "== -10" in guard and "__main__" in guard
    assert "episode" in variant.task.lower()


def test_options_are_validated_by_name():
    assert environment_options("tool-use-flattery") == ["threshold", "check_timeout"]
    with pytest.raises(EnvironmentOptionError, match="does not accept option"):
        make_environment("reward-tampering", {"threshold": "3"})
    with pytest.raises(EnvironmentOptionError, match="threshold='x'"):
        make_environment("tool-use-flattery", {"threshold": "x"})
    with pytest.raises(EnvironmentOptionError, match="between 1 and 5"):
        make_environment("tool-use-flattery", {"threshold": "9"})
    with pytest.raises(EnvironmentOptionError, match="check_timeout"):
        make_environment("rubric-modification-nudged", {"check_timeout": "-1"})
    with pytest.raises(EnvironmentOptionError, match="unknown environment"):
        make_environment("poetry-contest")


@pytest.mark.parametrize("name", sorted(ENVIRONMENTS))
def test_every_environment_has_a_non_gaming_error_outcome(name):
    env = ENVIRONMENTS[name]
    assert env.error_outcome in env.outcomes and env.error_outcome not in env.gaming_outcomes
