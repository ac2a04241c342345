"""rewardlab: generalizable reward models (GRM) and reward-gaming environments.

The Python API mirrors the command line: each command is a thin call of one of these.

=========================  ==========================================================================
command                    Python
=========================  ==========================================================================
``rewardlab train``        ``train(TrainConfig(...))``
``rewardlab score``        ``RewardScorer.from_pretrained(dir)``, ``score_file``, ``score_one``
``rewardlab export``       ``export_seq_cls(dir, out)``
``rewardlab push``         ``push_to_hub(dir, repo_id)``
``rewardlab eval``         ``evaluate(models, suite=... | data=[...])``, ``evaluation_markdown(result)``
``rewardlab serve``        ``serve(dir, ServeConfig(...))``
``envs run``               ``run_episodes(EpisodesConfig(...))``
``envs report``            ``report_folder(dir)``, ``format_report(table)``
``envs export-inspect``    ``export_inspect(run_dir)`` (needs ``rewardlab[inspect]``)
``repro grm``              ``run_repro_grm(ReproConfig(...))``
``repro grm-map``          ``run_grm_map(MapConfig(...))``
``repro overopt``          ``run_repro_overopt(OveroptReproConfig(...))``
``bon run``                ``run_bon(BonConfig(...))``
``rl-overopt run``         ``run_rl_study(RLConfig(...), BonConfig(...))``
``curriculum run``         ``run_curriculum(CurriculumConfig(...))`` (``repro curriculum``: its defaults)
``rewardlab demo``         ``run_demo(DemoConfig(...))``
=========================  ==========================================================================

``train``, ``evaluate`` and ``serve`` are subpackages that can be called (see `rewardlab.callable_package`).
Names are imported on first use, so ``import rewardlab`` stays fast (no torch until needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rewardlab.version import __version__

# public name -> (module, attribute in that module)
_EXPORTS: dict[str, tuple[str, str]] = {
    # data
    "PreferencePair": ("rewardlab.data.pair", "PreferencePair"),
    "load_pairs": ("rewardlab.data.loaders", "load_pairs"),
    # models
    "RewardModel": ("rewardlab.models.reward_model", "RewardModel"),
    "load_reward_model": ("rewardlab.models.persistence", "load_reward_model"),
    "save_reward_model": ("rewardlab.models.persistence", "save_reward_model"),
    "export_seq_cls": ("rewardlab.models.persistence", "export_seq_cls"),
    "push_to_hub": ("rewardlab.models.hub", "push_reward_model"),
    # training
    "TrainConfig": ("rewardlab.train.config", "TrainConfig"),
    "TrainResult": ("rewardlab.train.loop", "TrainResult"),
    # scoring and evaluation
    "RewardScorer": ("rewardlab.scoring", "RewardScorer"),
    "score_file": ("rewardlab.workflows", "score_file"),
    "score_one": ("rewardlab.workflows", "score_one"),
    "evaluation_markdown": ("rewardlab.evaluate.report", "to_markdown"),
    # serving
    "ServeConfig": ("rewardlab.serve.config", "ServeConfig"),
    # environments
    "EpisodesConfig": ("rewardlab.envs.workflow", "EpisodesConfig"),
    "run_episodes": ("rewardlab.envs.workflow", "play_episodes"),
    "report_folder": ("rewardlab.envs.report", "report_folder"),
    "format_report": ("rewardlab.envs.report", "format_report"),
    "make_environment": ("rewardlab.envs.environments", "make_environment"),
    "make_policy": ("rewardlab.policies", "make_policy"),
    "export_inspect": ("rewardlab.integrations.inspect.export", "export_run"),  # needs rewardlab[inspect]
    # experiments
    "DemoConfig": ("rewardlab.demo", "DemoConfig"),
    "run_demo": ("rewardlab.demo", "run_demo"),
    "ReproConfig": ("rewardlab.repro.config", "ReproConfig"),
    "run_repro_grm": ("rewardlab.repro.workflow", "run_repro_grm"),
    "MapConfig": ("rewardlab.repro.grm_map", "MapConfig"),
    "run_grm_map": ("rewardlab.repro.grm_map", "run_grm_map"),
    "OveroptReproConfig": ("rewardlab.repro.overopt", "OveroptReproConfig"),
    "run_repro_overopt": ("rewardlab.repro.overopt", "run_repro_overopt"),
    "BonConfig": ("rewardlab.overopt.config", "BonConfig"),
    "run_bon": ("rewardlab.overopt.study", "run_bon"),
    "RLConfig": ("rewardlab.overopt.config", "RLConfig"),
    "run_rl_study": ("rewardlab.overopt.rl_study", "run_rl_study"),
    "CurriculumConfig": ("rewardlab.curriculum.config", "CurriculumConfig"),
    "run_curriculum": ("rewardlab.curriculum.run", "run_curriculum"),
    # quiet third-party output, as the CLI does unless --verbose
    "quiet_libraries": ("rewardlab.verbosity", "quiet_libraries"),
}

# Names whose module needs an optional extra stay out of `__all__`, so `from rewardlab import *` works without it.
_NEEDS_EXTRA = {"export_inspect"}
__all__ = ["__version__", "evaluate", "serve", "train", *(name for name in _EXPORTS if name not in _NEEDS_EXTRA)]

# `train`, `evaluate` and `serve` are subpackages that can be called like the functions they name
# (see `rewardlab.callable_package`), so `from rewardlab import train` then `train(config)` works
# and `import rewardlab.train.loop` still does.
_CALLABLE_PACKAGES = ("train", "evaluate", "serve")


def __getattr__(name: str) -> Any:
    if name in _CALLABLE_PACKAGES:
        return importlib.import_module(f"rewardlab.{name}")
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'rewardlab' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _NEEDS_EXTRA)


if TYPE_CHECKING:  # for type checkers and editors; at run time the names load lazily
    from rewardlab.curriculum.config import CurriculumConfig
    from rewardlab.curriculum.run import run_curriculum
    from rewardlab.data.loaders import load_pairs
    from rewardlab.data.pair import PreferencePair
    from rewardlab.demo import DemoConfig, run_demo
    from rewardlab.envs.environments import make_environment
    from rewardlab.envs.report import format_report, report_folder
    from rewardlab.envs.workflow import EpisodesConfig
    from rewardlab.envs.workflow import play_episodes as run_episodes
    from rewardlab.evaluate.report import to_markdown as evaluation_markdown
    from rewardlab.integrations.inspect.export import export_run as export_inspect
    from rewardlab.models.hub import push_reward_model as push_to_hub
    from rewardlab.models.persistence import export_seq_cls, load_reward_model, save_reward_model
    from rewardlab.models.reward_model import RewardModel
    from rewardlab.overopt.config import BonConfig, RLConfig
    from rewardlab.overopt.rl_study import run_rl_study
    from rewardlab.overopt.study import run_bon
    from rewardlab.policies import make_policy
    from rewardlab.repro.config import ReproConfig
    from rewardlab.repro.grm_map import MapConfig, run_grm_map
    from rewardlab.repro.overopt import OveroptReproConfig, run_repro_overopt
    from rewardlab.repro.workflow import run_repro_grm
    from rewardlab.scoring import RewardScorer
    from rewardlab.serve.config import ServeConfig
    from rewardlab.train.config import TrainConfig
    from rewardlab.train.loop import TrainResult
    from rewardlab.verbosity import quiet_libraries
    from rewardlab.workflows import score_file, score_one
