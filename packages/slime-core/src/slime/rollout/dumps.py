"""Rollout dumps: ``--save-debug-rollout-data`` writes each rollout's samples, ``--load-debug-rollout-data`` trains on
them again without engines (slime's ``{"rollout_id", "samples"}`` layout, as JSON: slime's own ``.pt`` dumps are
pickles, which this never loads)."""

import json
from pathlib import Path

from slime.errors import DataError
from slime.files import atomic_write
from slime.types import Sample


def save_rollout_dump(path: str, rollout_id: int, samples: list[Sample]) -> None:
    atomic_write(path, json.dumps({"rollout_id": rollout_id, "samples": [s.to_dict() for s in samples]}))


def load_rollout_dump(path: str, rollout_id: int) -> list[Sample]:
    """The samples of ``path`` (a dump of rollout ``rollout_id``); a bad file is a one-line ``DataError``."""
    where = f"{path} (--load-debug-rollout-data, rollout {rollout_id})"
    try:
        dump = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{where}: not a JSON rollout dump ({exc})") from None
    if not isinstance(dump, dict) or not isinstance(dump.get("samples"), list):
        raise DataError(f'{where}: not a rollout dump (expected {{"rollout_id": ..., "samples": [...]}})')
    samples = []
    for number, data in enumerate(dump["samples"]):
        try:
            samples.append(Sample.from_dict(data))
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: sample {number}: {exc}") from None
    if not samples:
        raise DataError(f"{where}: no samples")
    return samples
