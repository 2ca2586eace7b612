"""slime's ``slime.rollout.filter_hub`` import paths: the dynamic-sampling filters live in ``slime.rollout.filters``."""
