"""slime's ``DynamicFilterOutput``: ``slime.rollout.filters.FilterOutput`` (``keep``, ``reason``) under slime's name."""

from slime.rollout.filters import FilterOutput as DynamicFilterOutput

__all__ = ["DynamicFilterOutput"]
