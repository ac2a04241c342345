"""rewardlab.serve"""
