"""A stand-in for Ray, for the GPU checks only: the lent GPU machine has no Ray and no network, slime-core's plugins
import Ray when they load, and the checks in bench/gpu/ run one train backend in one process without Ray. Every
``ray`` attribute and ``ray.*`` module is an inert placeholder; decorators (``ray.remote``) return what they wrap.
Put this folder first on PYTHONPATH there; never where Ray is installed."""

import importlib.abc
import importlib.machinery
import sys
import types


class _Placeholder(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(f"{self.__name__}.{name}")

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]  # used as a decorator
        return self


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.startswith("ray."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _Placeholder(spec.name)

    def exec_module(self, module) -> None:
        module.__path__ = []


sys.meta_path.insert(0, _Finder())


def __getattr__(name: str):
    return _Placeholder(f"ray.{name}")
