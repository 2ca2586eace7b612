"""``--dry-run``: the run's whole configuration, resolved and checked, printed instead of started.

By the time this prints, every flag has been parsed and derived (``parse_args``: slime's rules and every plugin's,
e.g. the megatron backend's model shape against config.json) and every input checked (``preflight``), all before
Ray starts: a cluster script can be checked on a laptop.
"""

import argparse
import json
from typing import Any

# Values that must never reach a console or a log.
SECRET_DESTS = frozenset({"wandb_key"})


def _shown(dest: str, value: Any) -> str:
    if dest in SECRET_DESTS and value is not None:
        return "<redacted>"
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def describe(args: argparse.Namespace) -> str:
    """One ``name = value`` line per attribute of ``args``, sorted by name (values as JSON where they are JSON)."""
    return "\n".join(f"{dest} = {_shown(dest, value)}" for dest, value in sorted(vars(args).items()))
