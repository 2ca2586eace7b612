"""Errors meant for the person running slime: each one is a single line that names what to fix."""


class SlimeError(Exception):
    """A user-facing error. The CLI prints its message alone (no traceback) and exits with status 2."""


class PluginError(SlimeError):
    """A plugin failed to import, registered a name twice, or a requested name is unknown."""


class ConfigError(SlimeError):
    """Bad flags, a bad config file, or flags that contradict each other."""


class DataError(SlimeError):
    """Prompt data that cannot be read: a malformed line, a missing key, an empty set."""
