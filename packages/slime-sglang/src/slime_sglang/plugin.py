"""slime-sglang's entry module: registers its parts with slime and nothing else.

The rollout backend itself lands with the SGLang backend work (see docs/status.md); until then this plugin
registers nothing.
"""
