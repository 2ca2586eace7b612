"""Bench only: the thread fix's "before" (``bench/e2e_vs_trl.py --before-one-thread``).

On ``PYTHONPATH``, every process of a run (the driver, Ray's workers, which inherit the variable) loads this at
start; when ``slime.ray.threads`` is imported its thread counts become 1 per process, as Ray's
``OMP_NUM_THREADS=1`` left them before slime sized them from the bundles.
"""

import importlib.abc
import sys


class OneThreadPerProcess(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "slime.ray.threads":
            return None
        spec = next(
            (found for finder in sys.meta_path if finder is not self and hasattr(finder, "find_spec")
             for found in [finder.find_spec(name, path, target)] if found is not None),
            None,
        )  # fmt: skip
        if spec is None:
            return None
        load = spec.loader.exec_module

        def exec_module(module) -> None:
            load(module)
            module.threads_per_process = lambda nodes, holdings, alternate: [1] * len(holdings)
            module.engine_threads_without_placement = lambda args: 1

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, OneThreadPerProcess())
