"""`rewardlab repro grm-map`: BT against GRM over a grid of depth, data, length and α, with drift beside accuracy."""

from rewardlab.repro.grm_map.config import MapConfig, Training
from rewardlab.repro.grm_map.run import MapResult, run_grm_map

__all__ = ["MapConfig", "MapResult", "Training", "run_grm_map"]
