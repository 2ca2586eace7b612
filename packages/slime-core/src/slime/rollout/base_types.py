"""slime's ``slime.rollout.base_types``: what slime's rollout and eval functions return (a bare list of groups, or a
dict of datasets, is accepted too; ``slime.rollout.signatures`` reads each)."""

from dataclasses import dataclass
from typing import Any

from slime.types import Sample


@dataclass
class RolloutFnTrainOutput:
    samples: list[list[Sample]]
    metrics: dict[str, Any] | None = None


@dataclass
class RolloutFnEvalOutput:
    data: dict[str, dict[str, Any]]  # dataset -> {"rewards": [...], "truncated": [...], "samples": [...]}
    metrics: dict[str, Any] | None = None
