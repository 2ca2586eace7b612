"""Rollout and eval functions: turn prompts into scored samples through a rollout engine."""
