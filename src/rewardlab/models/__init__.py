"""rewardlab.models"""
