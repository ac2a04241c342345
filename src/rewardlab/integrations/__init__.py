"""rewardlab inside other tools: its reward models as TRL reward functions (`rewardlab.integrations.trl`)."""
