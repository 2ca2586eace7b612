"""slime's ``from slime.utils.types import Sample``: the same ``Sample`` as ``slime.types`` (with ``Sample.Status``)."""

from slime.types import Sample

__all__ = ["Sample"]
