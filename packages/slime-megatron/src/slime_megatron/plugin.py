"""slime-megatron's entry module: registers its parts with slime and nothing else.

The train backend itself lands with the Megatron-core backend work (see docs/status.md); until then this plugin
registers nothing.
"""
