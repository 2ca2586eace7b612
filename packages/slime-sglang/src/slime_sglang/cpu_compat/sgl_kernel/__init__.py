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
