"""Run configuration: slime's flags and ``--config`` YAML, and the input checks that run before Ray starts."""
