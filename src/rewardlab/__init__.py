"""rewardlab: generalizable reward models (GRM) and reward-gaming environments."""

__version__ = "0.1.0"
