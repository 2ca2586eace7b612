"""Stand-in for ``sgl_kernel`` on CPU: every name and submodule imports; calling a kernel raises.

SGLang 0.5.23 imports ``sgl_kernel`` names at module level but calls none of them on its CPU path (measured), and
no CPU build of the real package exists. Placed on the SGLang server subprocess's path only, by slime-sglang.
"""

import importlib.abc
import importlib.machinery
import sys
import types

__version__ = "0.4.10+slime.cpu"


class MissingKernel:
    """Any name of ``sgl_kernel``: attribute access gives another stand-in, a call fails with the kernel's name."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> "MissingKernel":
        if attr.startswith("__"):
            raise AttributeError(attr)
        return MissingKernel(f"{self._name}.{attr}")

    def __call__(self, *args, **kwargs):
        raise NotImplementedError(
            f"{self._name} is a CUDA kernel; slime-sglang's CPU stand-in for sgl_kernel cannot run it"
        )

    def __repr__(self) -> str:
        return f"<sgl_kernel stand-in {self._name}>"


def _module_getattr(module_name: str):
    def __getattr__(attr: str) -> MissingKernel:
        # Dunder lookups (``__all__`` for ``import *``, ``__path__``...) must fail the ordinary way.
        if attr.startswith("__"):
            raise AttributeError(attr)
        return MissingKernel(f"{module_name}.{attr}")

    return __getattr__


class _SubmoduleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``sgl_kernel.<anything>`` (any depth) an importable stand-in package."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(__name__ + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = _module_getattr(spec.name)
        return module

    def exec_module(self, module) -> None:
        pass


__getattr__ = _module_getattr(__name__)
sys.meta_path.insert(0, _SubmoduleFinder())


# The one kernel SGLang calls on CPU: the hash behind seeded sampling (--enable-deterministic-inference). The same
# MurmurHash3 mix as SGLang's GPU kernel, on 32-bit values held in int64 (products wrap mod 2**64, which keeps
# the low 32 bits right).
_MASK32 = 0xFFFFFFFF


def _rotl32(x: "torch.Tensor", r: int) -> "torch.Tensor":
    return ((x << r) | (x >> (32 - r))) & _MASK32


def _mix(h: "torch.Tensor", k: "torch.Tensor") -> "torch.Tensor":
    k = _rotl32((k * 0xCC9E2D51) & _MASK32, 15)
    k = (k * 0x1B873593) & _MASK32
    h = _rotl32(h ^ k, 13)
    return (h * 5 + 0xE6546B64) & _MASK32


def _murmur_hash32(seed: "torch.Tensor", positions: "torch.Tensor", col_indices: "torch.Tensor") -> "torch.Tensor":
    seed = seed.to(torch.int64).view(-1, 1)
    h = torch.zeros_like(seed)
    h = _mix(h, seed & _MASK32)
    h = _mix(h, (seed >> 32) & _MASK32)
    h = _mix(h, positions.to(torch.int64).view(-1, 1) & _MASK32)
    h = _mix(h, col_indices.to(torch.int64).view(1, -1) & _MASK32)
    h = h ^ 16
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & _MASK32
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & _MASK32
    h = h ^ (h >> 16)
    return h.to(torch.uint32)


import torch  # noqa: E402  (only the server process, which has torch, imports this stand-in)

torch.library.custom_op("sgl_kernel::murmur_hash32_cpu", mutates_args=())(_murmur_hash32).register_fake(
    lambda seed, positions, col_indices: seed.new_empty((seed.shape[0], col_indices.shape[0]), dtype=torch.uint32)
)
