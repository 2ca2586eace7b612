"""Shared helpers of the metric tests: readers of every sink's files, slime args, a clean metric logger per test."""

import sys
from pathlib import Path

import pytest

# Lets tests (and later end-to-end tests) `import readers`; pytest's importlib mode does not add test folders.
sys.path.insert(0, str(Path(__file__).parent))

from slime.config.arguments import build_parser  # noqa: E402
from slime.metrics import finish_metrics  # noqa: E402

BASE_ARGV = ["--rollout-batch-size", "2", "--n-samples-per-prompt", "4", "--global-batch-size", "4"]


@pytest.fixture
def make_args(tmp_path):
    """slime's parsed flags (every installed plugin's included): 2 prompts x 4 samples, 2 optimizer steps per rollout,
    output in tmp_path. Cross-flag validation is skipped: it belongs to other packages; these tests need the values.
    """

    def make(*argv: str, output_dir: Path | None = None):
        args = build_parser().parse_args([*BASE_ARGV, "--output-dir", str(output_dir or tmp_path), *argv])
        args.num_steps_per_rollout = args.rollout_batch_size * args.n_samples_per_prompt // args.global_batch_size
        args.eval_reward_key = args.eval_reward_key or args.reward_key
        return args

    return make


@pytest.fixture(autouse=True)
def _finish_metrics():
    yield
    finish_metrics()


class MemorySink:
    """A sink that keeps what it is sent, registered by the ``memory_sink`` fixture."""

    instances: list["MemorySink"] = []

    def __init__(self, args, *, primary=True, label="driver"):
        self.calls: list[tuple[dict, str]] = []
        self.finished = False
        MemorySink.instances.append(self)

    def log(self, metrics, step_key):
        self.calls.append((dict(metrics), step_key))

    def finish(self):
        self.finished = True


@pytest.fixture
def plugin():
    """Register in-process plugins (objects with @hookimpl methods) for one test: ``plugin(obj, name)``."""
    from slime.plugins import register_plugin, unregister_plugin

    names = []

    def register(obj, name):
        register_plugin(obj, name)
        names.append(name)

    yield register
    for name in names:
        unregister_plugin(name)


@pytest.fixture
def memory_sink(plugin):
    """A ``memory`` sink active in every run started during the test; returns the list of its instances."""
    from slime.hookspecs import hookimpl

    class Plugin:
        @hookimpl
        def slime_register_metric_sinks(self, register):
            register("memory", MemorySink)

    MemorySink.instances = []
    plugin(Plugin(), "test-memory-sink")
    return MemorySink.instances
