"""rewardlab.models: the GRM reward model, the model registry, LoRA/freezing, save/load/export.

Names are imported lazily, so `import rewardlab.models.registry` does not pull in PEFT.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "HeadConfig": "heads",
    "RewardHead": "heads",
    "RewardModel": "reward_model",
    "RewardOutput": "reward_model",
    "MODEL_ALIASES": "registry",
    "ModelLoadError": "registry",
    "load_backbone": "registry",
    "load_tokenizer": "registry",
    "resolve_model_path": "registry",
    "apply_lora": "lora",
    "freeze_lower_layers": "lora",
    "count_parameters": "lora",
    "CheckpointError": "persistence",
    "save_reward_model": "persistence",
    "load_reward_model": "persistence",
    "export_seq_cls": "persistence",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rewardlab.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rewardlab.models.{module}"), name)
