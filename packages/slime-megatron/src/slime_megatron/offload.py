"""``--offload-train`` on a GPU: the trainer's weights, gradients and optimizer state to host memory between training
phases, so colocated rollout engines (``--colocate``) can use the device, and back before the next phase.

slime does this with torch_memory_saver, an allocator hook that unmaps the device memory and keeps a host copy. Here
each device storage is copied to pinned host memory and resized to nothing, then resized and copied back: every
tensor keeps its identity and device, so megatron's gradient hooks (tied to the parameters' autograd accumulators,
which moving a parameter to another device through ``.data`` would reset) and its buffers' views stay valid.
megatron-core's own RL offload calls are not used for that reason: its optimizer's moves parameters by ``.data``,
which for the fp32 optimizer are the model's. NCCL communicators keep their device memory (slime destroys and rebuilds
them); the caching allocator's free blocks go back to the driver with ``empty_cache``.
"""

import contextlib
from collections.abc import Iterator

import torch

from slime_megatron.optimizer import Trainable


class HostCopies:
    """Device storages freed to pinned host memory, each once however many tensors view it."""

    def __init__(self) -> None:
        self.saved: dict[int, tuple[torch.UntypedStorage, torch.Tensor]] = {}

    def free(self, tensors) -> None:
        for tensor in tensors:
            storage = tensor.untyped_storage()
            if storage.device.type != "cuda" or storage.nbytes() == 0 or storage._cdata in self.saved:
                continue  # on the host already, freed already (e.g. a view of a freed buffer)
            host = torch.empty(storage.nbytes(), dtype=torch.uint8, pin_memory=True)
            host.untyped_storage().copy_(storage)
            storage.resize_(0)
            self.saved[storage._cdata] = (storage, host)

    def restore(self) -> None:
        for storage, host in self.saved.values():
            storage.resize_(host.numel())
            storage.copy_(host.untyped_storage())
        self.saved.clear()


def weights(trainable: Trainable) -> list[torch.Tensor]:
    """The model's parameters (under the distributed optimizer, views into the DDP buffers' parameter storage)."""
    return list(trainable.model.module.parameters())


def training_state(trainable: Trainable) -> list[torch.Tensor]:
    """What only training needs: the DDP gradient buffers, the optimizer's main parameters, their gradients, and
    its state (Adam's moments)."""
    tensors = [
        buffer.grad_data
        for buffer in [*trainable.model.buffers, *trainable.model.expert_parallel_buffers]
        if buffer.grad_data is not None
    ]
    optimizer = trainable.optimizer
    for part in getattr(optimizer, "chained_optimizers", [optimizer]):
        for group in part.optimizer.param_groups:
            tensors += group["params"]
            tensors += [p.grad for p in group["params"] if p.grad is not None]
        for state in part.optimizer.state.values():
            tensors += [value for value in state.values() if torch.is_tensor(value)]
    return tensors


class OffloadedTrainer:
    """A trainer whose device memory is in host memory until ``restore``; made by offloading it."""

    def __init__(self, trainable: Trainable) -> None:
        self.trainable = trainable
        self.weights, self.state = HostCopies(), HostCopies()
        torch.cuda.synchronize()
        self.weights.free(weights(trainable))
        self.state.free(training_state(trainable))  # the fp32 optimizer's parameters are the weights: freed once
        _release_cached_memory()

    def restore(self) -> None:
        self.weights.restore()
        self.state.restore()
        torch.cuda.synchronize()

    @contextlib.contextmanager
    def weights_on_device(self) -> Iterator[None]:
        """The weights alone back on the device while they are exported (weight updates gather them over
        tensor-parallel ranks there), then to host memory again."""
        self.weights.restore()
        try:
            yield
        finally:
            torch.cuda.synchronize()
            self.weights.free(weights(self.trainable))
            _release_cached_memory()


def _release_cached_memory() -> None:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
