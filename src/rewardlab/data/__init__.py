"""rewardlab.data"""
