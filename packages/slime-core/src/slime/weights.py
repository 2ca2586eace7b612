"""Weight sync through disk, for any rollout engine that can load an HF checkpoint directory.

The trainer's sender process writes the weights as an HF safetensors checkpoint (with the model's config and
tokenizer files), then asks the rollout manager to have its engines load it. Distributed (broadcast) transports
are the rollout backend's own receivers.
"""

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ray
import torch
from safetensors.torch import save_file

# Files of an HF model directory that are not weights: engines need them to load the directory.
_MODEL_FILES = ("*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja")


class DiskWeightReceiver:
    """Picklable: made in the rollout manager, used in the trainer's process."""

    def __init__(self, rollout_manager: Any, hf_checkpoint: str, directory: str) -> None:
        self.rollout_manager = rollout_manager  # a Ray actor handle
        self.hf_checkpoint = hf_checkpoint
        self.directory = directory

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]], weight_version: str) -> None:
        target = Path(self.directory) / f"weight_v{weight_version}"
        staging = Path(self.directory) / f".tmp_weight_v{weight_version}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for pattern in _MODEL_FILES:
            for path in Path(self.hf_checkpoint).glob(pattern):
                if path.name != "model.safetensors.index.json":
                    shutil.copyfile(path, staging / path.name)
        tensors = unshared_tensors({name: tensor.detach().contiguous().cpu() for name, tensor in named_tensors})
        save_file(tensors, staging / "model.safetensors")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)  # engines never see a half-written directory
        ray.get(self.rollout_manager.update_weights_from_disk.remote(str(target), weight_version))


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
