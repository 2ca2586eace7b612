"""slime-metrics: W&B and TensorBoard metric sinks and the `slime report` command, registered in ``plugin``."""
