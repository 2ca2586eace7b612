"""Writes that nobody sees half done: write under a temporary name beside the target, then rename it into place.

A rename within one directory is atomic, so a reader (an engine loading weights, a run resuming from a checkpoint)
finds the old file or the new one, even when the writer crashes mid-write. What a crashed write leaves under the
temporary name is replaced by the next write.
"""

import os
import shutil
from pathlib import Path


def staging_path(target: str | Path) -> Path:
    """Where ``target`` is written before it is renamed: beside it, since a rename is atomic only within one file
    system, as ``<name>.tmp``."""
    target = Path(target)
    return target.with_name(target.name + ".tmp")


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path``, creating its parent directories; a crash leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(path)
    if isinstance(data, str):
        staging.write_text(data, encoding="utf-8")
    else:
        staging.write_bytes(data)
    os.replace(staging, path)


def fresh_staging_dir(target: str | Path) -> Path:
    """An empty ``staging_path(target)`` directory to write ``target``'s files into; ``publish_dir`` moves it."""
    staging = staging_path(target)
    shutil.rmtree(staging, ignore_errors=True)  # left by a crash mid-write
    staging.mkdir(parents=True)
    return staging


def publish_dir(target: str | Path) -> None:
    """Rename the finished staging directory to ``target``.

    A directory cannot be renamed over a non-empty one, so a previous ``target`` is first renamed aside to
    ``<name>.old`` and deleted only once the new one has its name.
    """
    target = Path(target)
    staging = staging_path(target)
    if target.exists():
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old)
    else:
        staging.rename(target)
