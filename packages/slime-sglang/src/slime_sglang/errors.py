"""slime-sglang's user-facing errors: one line each, naming what failed and where its log is."""

from slime.errors import SlimeError


class SGLangError(SlimeError):
    """Something about the SGLang backend failed in a way the user can act on."""


class ServerStartError(SGLangError):
    """An SGLang server or the router did not come up (the message ends with its log's last lines)."""


class EngineDiedError(SGLangError):
    """An engine stopped answering mid-run and fault tolerance is off (or could not bring it back)."""


class RequestError(SGLangError):
    """A request kept failing past its retry deadline, or an engine answered with an error."""
