"""rewardlab.policies"""
