"""rewardlab.envs"""
