"""Reward-model training: `TrainConfig` (config.py), the loop (loop.py), checkpoints and packing.

The package is callable: ``rewardlab.train(config)`` runs `rewardlab.train.loop.train`.
"""

from rewardlab.callable_package import make_callable

make_callable(__name__, "rewardlab.train.loop:train")
