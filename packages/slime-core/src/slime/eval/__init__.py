"""Evaluation: held-out datasets (their settings, prompts and generation); their metrics are in ``slime.metrics``."""
