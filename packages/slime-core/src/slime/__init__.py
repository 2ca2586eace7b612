"""slime: reinforcement-learning post-training for large language models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("slime-core")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
