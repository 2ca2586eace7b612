"""The process group and megatron-core's parallel state (TP, PP, DP, EP) for one training rank."""

import datetime
import os

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed


def init_parallel(
    *,
    rank: int,
    world_size: int,
    tp_size: int = 1,
    pp_size: int = 1,
    ep_size: int = 1,
    seed: int = 1234,
    on_cpu: bool = False,
    init_method: str | None = None,
) -> None:
    """Join the world (gloo on CPU, NCCL on GPU), split it into TP/PP/DP groups (and EP groups for the experts, each
    expert whole on one rank: expert tensor parallelism 1), and seed every RNG.

    ``init_method`` defaults to ``env://`` (``MASTER_ADDR``/``MASTER_PORT``). Data-parallel size is what is left:
    ``world_size / (tp_size * pp_size)``. An existing process group is reused and an existing parallel layout is
    replaced, so one process can switch layouts (tests do).
    """
    if world_size % (tp_size * pp_size):
        raise ValueError(f"world size {world_size} is not divisible by TP {tp_size} x PP {pp_size}")
    if not dist.is_initialized():
        if not on_cpu:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count())))
        dist.init_process_group(
            backend="gloo" if on_cpu else "nccl",
            init_method=init_method or "env://",
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(minutes=30),
        )
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=tp_size,
        pipeline_model_parallel_size=pp_size,
        expert_model_parallel_size=ep_size,
        expert_tensor_parallel_size=1,
    )
    # Megatron's tracker seeds TP-region RNG streams; on CPU (cpu_compat) they are the CPU generator's states.
    torch.manual_seed(seed)
    model_parallel_cuda_manual_seed(seed)


def destroy_parallel() -> None:
    parallel_state.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
