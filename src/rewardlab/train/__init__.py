"""rewardlab.train"""
