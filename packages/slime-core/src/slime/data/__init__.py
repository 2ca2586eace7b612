"""Prompt data: reading files, building prompt samples, and the data source that hands them to rollouts."""
