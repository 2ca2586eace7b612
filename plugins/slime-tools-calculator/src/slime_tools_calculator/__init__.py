"""A calculator tool for slime's multi-turn rollouts: arithmetic without eval"""
