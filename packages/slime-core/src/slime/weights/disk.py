"""Weight sync through disk, for any rollout engine that can load an HF checkpoint directory.

The trainer's sender process writes the weights as an HF safetensors checkpoint (with the model's config and
tokenizer files), then asks the rollout manager to have its engines load it. Distributed (broadcast) transports
are the rollout backend's own receivers.
"""

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ray
import torch
from safetensors.torch import save_file

from slime.files import fresh_staging_dir, publish_dir

logger = logging.getLogger(__name__)


class DiskWeightReceiver:
    """Picklable: made in the rollout manager, used in the trainer's process."""

    def __init__(self, rollout_manager: Any, hf_checkpoint: str, directory: str) -> None:
        self.rollout_manager = rollout_manager  # a Ray actor handle
        self.hf_checkpoint = hf_checkpoint
        self.directory = directory

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]], weight_version: str) -> None:
        target = Path(self.directory) / f"weight_v{weight_version}"
        tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in named_tensors}
        write_hf_checkpoint(tensors, self.hf_checkpoint, target)
        ray.get(self.rollout_manager.update_weights_from_disk.remote(str(target), weight_version))
        remove_earlier_updates(target)


def remove_earlier_updates(current: Path) -> None:
    """Once the engines serve ``current``, the earlier updates' directories only take disk space (a model each).

    Only ``weight_v<number>`` directories go: ``--update-weight-disk-dir`` may hold other things.
    """
    for path in current.parent.glob("weight_v*"):
        if path != current and path.name.removeprefix("weight_v").isdigit():
            try:
                shutil.rmtree(path)
            except OSError as exc:  # the run goes on; the directory is only disk space
                logger.warning("could not remove the earlier weight update %s: %s", path, exc)


def write_hf_checkpoint(tensors: dict[str, torch.Tensor], hf_source_dir: str | Path, out_dir: str | Path) -> Path:
    """``tensors`` as ``model.safetensors`` beside the source model's config, tokenizer and other non-weight files.

    Written under a temporary name and renamed, so readers (engines, a later run) never see a half-written directory.
    """
    source, out = Path(hf_source_dir), Path(out_dir)
    staging = fresh_staging_dir(out)
    for path in source.iterdir():
        if path.is_file() and not path.name.startswith("model.safetensors") and not path.name.endswith(".bin"):
            shutil.copyfile(path, staging / path.name)
    save_file(unshared_tensors(tensors), staging / "model.safetensors", metadata={"format": "pt"})
    publish_dir(out)
    return out


def unshared_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing storage (tied embeddings): keep the first name of each."""
    seen: set[int] = set()
    kept = {}
    for name, tensor in tensors.items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        kept[name] = tensor
    return kept
