"""Megatron-core on CPU with gloo: the one place that knows where megatron-core hard-codes CUDA (DESIGN §6).

megatron-core assumes a GPU in a handful of places no config flag avoids (measured on 0.14, 0.16.1 and 0.19.2):
tensors allocated with ``device="cuda"`` or ``torch.cuda.current_device()``, ``torch.cuda.synchronize()``, the CUDA
RNG tracker, and checks that tensors are ``torch.cuda.*Tensor``. ``enable()`` patches exactly those places, and is
called only when training runs without a GPU; on a GPU nothing here is touched.

Three kinds of patch, so each stays small:
- A module whose only CUDA assumption is *where* tensors go gets, as its global ``torch``, a view of torch in which
  ``torch.cuda.current_device()`` is the CPU, ``device="cuda"`` means the CPU, ``torch.cuda.synchronize()`` and
  streams (created, waited on, recorded) do nothing and the "CUDA" RNG is the CPU generator. Everything else is
  torch itself.
  ``_DEVICE_ONLY_MODULES`` lists those modules, each with the reason it is there.
- A call that checks ``tensor.type() == 'torch.cuda.FloatTensor'`` or moves tensors with ``.cuda()`` runs with CPU
  tensors passing as CUDA ones for its duration (``_CUDA_TYPED_CALLS``).
- Three helpers are replaced: the RNG tracker's two that read CUDA generator internals (by CPU-generator ones), and
  the MoE token dispatcher's device-to-host copy of its split sizes (which skips CPU tensors, leaving gloo tensors
  where it needs numbers).

The patches touch megatron-core internals, so they are pinned to one megatron-core version: ``enable()`` refuses any
other.
"""

import contextlib
import functools
import importlib
import importlib.metadata
import os
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import torch

MEGATRON_CORE_VERSION = "0.19.2"

# Modules that allocate or synchronise on "the current CUDA device" inline; each gets the CPU view of torch.
_DEVICE_ONLY_MODULES = (
    # RotaryEmbedding.get_emb moves inv_freq to torch.cuda.current_device() on the first forward.
    "megatron.core.models.common.embeddings.rotary_pos_embedding",
    # GlobalMemoryBuffer.get_tensor (attention scores in DotProductAttention) allocates on the current CUDA device.
    "megatron.core.utils",
    # get_default_causal_mask, the unfused softmax's causal mask, is built with device="cuda".
    "megatron.core.transformer.utils",
    # The RNG tracker seeds torch.cuda's generator (model_parallel_cuda_manual_seed, CudaRNGStatesTracker.add).
    "megatron.core.tensor_parallel.random",
    # Tensor-parallel gathers and reductions allocate their outputs on the current CUDA device.
    "megatron.core.tensor_parallel.mappings",
    "megatron.core.tensor_parallel.utils",
    # Column/row-parallel layers allocate gather buffers (and GPU-initialised weights) on the current CUDA device.
    "megatron.core.tensor_parallel.layers",
    # Grad-norm accumulators and the all-reduced norm are created with device="cuda".
    "megatron.core.optimizer.clip_grads",
    # FP32Optimizer's loss scale and MixedPrecisionOptimizer's found_inf are device="cuda" tensors.
    "megatron.core.optimizer.optimizer",
    # The distributed optimizer gathers and scatters its state shards through current-device buffers.
    "megatron.core.optimizer.distrib_optimizer",
    # DDP's contiguous grad buffers are allocated on torch.cuda.current_device(); grad sync waits on CUDA streams.
    "megatron.core.distributed.param_and_grad_buffer",
    # Each schedule counts tokens in a device="cuda" tensor.
    "megatron.core.pipeline_parallel.schedules",
    # Pipeline stages allocate receive buffers on the current CUDA device and synchronize after exchanges.
    "megatron.core.pipeline_parallel.p2p_communication",
    # The checkpoint writer synchronizes before writing; the saver builds its plan on the current CUDA device.
    "megatron.core.dist_checkpointing.strategies.filesystem_async",
    "megatron.core.dist_checkpointing.strategies.state_dict_saver",
    # The router moves its weight to torch.cuda.current_device() on every gating call; its token counts live there.
    "megatron.core.transformer.moe.router",
    # The all-to-all token dispatcher copies its split sizes to the host on a side CUDA stream.
    "megatron.core.transformer.moe.token_dispatcher",
)

_FACTORIES = ("tensor", "zeros", "ones", "empty", "full", "arange", "randn", "rand", "empty_strided")


def _cpu_if_cuda(device: Any) -> Any:
    if isinstance(device, int) or (device is not None and torch.device(device).type == "cuda"):
        return torch.device("cpu")
    return device


def _on_cpu(factory: Callable) -> Callable:
    @functools.wraps(factory)
    def create(*args, **kwargs):
        if "device" in kwargs:
            kwargs["device"] = _cpu_if_cuda(kwargs["device"])
        return factory(*args, **kwargs)

    return create


class _CudaOnCpu(types.SimpleNamespace):
    """``torch.cuda`` as a patched module sees it: the current device is the CPU, and so is the generator."""

    def __getattr__(self, name: str) -> Any:
        return getattr(torch.cuda, name)


class _NoStream:
    """The CPU runs everything in order: waiting on a stream or an event has nothing to wait for. One instance
    stands for every stream, so a "side stream" compares equal to the current one."""

    def wait_event(self, event: Any) -> None:
        pass

    def wait_stream(self, stream: Any) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def record_event(self, event: Any = None) -> "_NoStream":
        return self  # an event that is already complete: synchronize() returns at once


_NO_STREAM = _NoStream()


def _host_copy(tensor: Any, as_numpy: bool = False, record_stream: bool = False) -> Any:
    """moe_utils.maybe_move_tensor_to_cpu on CPU: the tensor is already on the host, but split sizes asked for
    ``as_numpy`` must still become numbers (gloo's all_to_all_single takes sizes as integers, not tensors)."""
    if as_numpy and torch.is_tensor(tensor):
        return tensor.numpy()
    return tensor


class _TorchOnCpu(types.ModuleType):
    """``torch`` as a patched module sees it: torch itself, but ``cuda`` devices mean the CPU."""

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


def _torch_on_cpu() -> _TorchOnCpu:
    view = _TorchOnCpu("torch")
    view.cuda = _CudaOnCpu(
        current_device=lambda: torch.device("cpu"),
        synchronize=lambda device=None: None,
        current_stream=lambda device=None: _NO_STREAM,
        Stream=lambda *args, **kwargs: _NO_STREAM,
        stream=lambda stream: contextlib.nullcontext(),
        get_rng_state=lambda device="cuda": torch.get_rng_state(),
        set_rng_state=lambda state, device="cuda": torch.set_rng_state(state),
        manual_seed=torch.manual_seed,
        FloatTensor=torch.FloatTensor,
    )
    for name in _FACTORIES:
        setattr(view, name, _on_cpu(getattr(torch, name)))
    return view


def _get_rng_state(device: Any = "cuda", clone: bool = False, graph_safe: bool = False) -> torch.Tensor:
    return torch.get_rng_state()


def _set_rng_state(new_state: torch.Tensor, device: int = -1, graph_safe: bool = False) -> None:
    torch.set_rng_state(new_state)


def _no_device_arch() -> int:
    return 0  # below every GPU generation: Megatron takes its pre-Hopper paths, which have CPU equivalents


@contextlib.contextmanager
def _cpu_tensors_pass_as_cuda() -> Iterator[None]:
    """For the duration of one megatron-core call, CPU tensors answer ``.type()`` with their CUDA name and
    ``.cuda()`` leaves them where they are: the call's type checks and device moves then accept CPU tensors."""
    type_, cuda = torch.Tensor.type, torch.Tensor.cuda

    def cuda_type(tensor, dtype=None, non_blocking=False, **kwargs):
        if dtype is not None or tensor.is_cuda:
            return type_(tensor, dtype, non_blocking, **kwargs)
        return type_(tensor).replace("torch.", "torch.cuda.", 1)

    torch.Tensor.type = cuda_type
    torch.Tensor.cuda = lambda tensor, *args, **kwargs: tensor
    try:
        yield
    finally:
        torch.Tensor.type, torch.Tensor.cuda = type_, cuda


def _passing_cpu_as_cuda(function: Callable) -> Callable:
    @functools.wraps(function)
    def call(*args, **kwargs):
        with _cpu_tensors_pass_as_cuda():
            return function(*args, **kwargs)

    return call


# Functions and methods run with _cpu_tensors_pass_as_cuda, each with the check or move that needs it.
_CUDA_TYPED_CALLS = [
    # Asserts every grad is a 'torch.cuda.FloatTensor'. The optimizer module imported it by name: both are patched.
    ("megatron.core.optimizer.clip_grads", "clip_grad_by_total_norm_fp32"),
    ("megatron.core.optimizer.optimizer", "clip_grad_by_total_norm_fp32"),
    # Sorts parameters into fp32 / fp16 / bf16 groups by their 'torch.cuda.*Tensor' names, refusing anything else.
    ("megatron.core.optimizer.optimizer", "Float16OptimizerWithFloat16Params.__init__"),
    ("megatron.core.optimizer.distrib_optimizer", "DistributedOptimizer.__init__"),
    # With tied embeddings over pipeline stages, moves the last stage's copy with weight.data.cuda() before
    # the first and last stages all-reduce it.
    ("megatron.core.models.common.language_module.language_module", "LanguageModule.setup_embeddings_and_output_layer"),
]


def _patch(module_name: str, path: str, make: Callable[[Callable], Callable]) -> None:
    """Replace ``module.path`` (a function, or ``Class.method``) by ``make(original)``."""
    owner: Any = importlib.import_module(module_name)
    *parents, attribute = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    if attribute not in vars(owner):
        raise RuntimeError(f"megatron-core changed: {module_name}.{path} is gone")
    original = vars(owner)[attribute]
    if isinstance(original, classmethod | staticmethod):
        replacement = type(original)(make(original.__func__))
    else:
        replacement = make(original)
    setattr(owner, attribute, replacement)


# CUDA-only extension packages that a CPU machine may still have installed (SGLang depends on sgl-flash-mla). Their
# import raises OSError (libcuda.so.1 is missing), and megatron-core's optional imports catch only ImportError, so
# `import megatron.core.transformer.attention` fails. Hidden, they raise ImportError and megatron-core skips them.
_CUDA_ONLY_PACKAGES = ("flash_mla",)

_enabled = False


def check_version() -> None:
    """Refuse a megatron-core other than the one these patches were written against."""
    # megatron.core.__version__ appends the git commit of whatever repository surrounds the install, so the
    # distribution's metadata is the reliable version.
    found = importlib.metadata.version("megatron-core")
    if found != MEGATRON_CORE_VERSION:
        raise RuntimeError(
            f"slime_megatron's CPU mode patches megatron-core {MEGATRON_CORE_VERSION} internals, "
            f"but megatron-core {found} is installed; install megatron-core=={MEGATRON_CORE_VERSION}"
        )


def enable() -> None:
    """Patch megatron-core so that it runs on CPU. Idempotent.

    Call it before anything imports megatron-core's model modules (``slime_megatron.model`` does): it must hide
    CUDA-only packages first.
    """
    global _enabled
    if _enabled:
        return
    if torch.cuda.is_available():
        raise RuntimeError("slime_megatron's CPU mode is for machines without a GPU, but CUDA is available")
    check_version()
    for package in _CUDA_ONLY_PACKAGES:
        if package in sys.modules and sys.modules[package] is not None:
            raise RuntimeError(f"enable() must run before {package} is imported (it cannot load without CUDA)")
        sys.modules[package] = None  # makes `import package` raise ImportError
    view = _torch_on_cpu()
    for name in _DEVICE_ONLY_MODULES:
        module = importlib.import_module(name)
        module.torch = view
    for module_name, path in _CUDA_TYPED_CALLS:
        _patch(module_name, path, _passing_cpu_as_cuda)
    # The tracker's state get/set read torch.cuda's default generators; on CPU its states are the CPU generator's.
    _patch("megatron.core.tensor_parallel.random", "_get_cuda_rng_state", lambda _: _get_rng_state)
    _patch("megatron.core.tensor_parallel.random", "_set_cuda_rng_state", lambda _: _set_rng_state)
    _patch("megatron.core.transformer.moe.token_dispatcher", "maybe_move_tensor_to_cpu", lambda _: _host_copy)
    # Megatron-LM's validate_args (megatron_config.py) asks the GPU's architecture, and with TP or CP > 1 requires
    # CUDA_DEVICE_MAX_CONNECTIONS=1 (a CUDA stream setting, meaningless on CPU).
    _patch("megatron.training.arguments", "get_device_arch_version", lambda _: _no_device_arch)
    os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "1")
    _enabled = True


def is_enabled() -> bool:
    return _enabled
