"""What Inspect's ``inspect_ai`` entry point loads: the environment tasks and the `rewardlab-bwrap` sandbox.

Importing this module registers ``rewardlab/<environment>`` tasks (underscored names, e.g.
``rewardlab/reward_tampering``) and the ``rewardlab-bwrap`` sandbox environment with Inspect.
"""

from rewardlab.integrations.inspect.sandbox import RewardlabBwrapSandbox
from rewardlab.integrations.inspect.tasks import (
    political_sycophancy,
    reward_tampering,
    rubric_modification_insubordinate,
    rubric_modification_nudged,
    tool_use_flattery,
)

__all__ = [
    "RewardlabBwrapSandbox", "political_sycophancy", "reward_tampering", "rubric_modification_insubordinate",
    "rubric_modification_nudged", "tool_use_flattery",
]
