"""Settings every test process shares: no network, no telemetry, W&B offline."""

import os

# Set before anything imports ray, wandb or huggingface_hub (they read these at import time).
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")  # else Ray rebuilds a venv per session under `uv run`
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# No per-example time limit: on a shared 2-core machine the first example (imports, warm-up) can take a second, and a
# wall-clock deadline then fails a correct test.
settings.register_profile("slime", deadline=None)
settings.load_profile("slime")


LONG_TESTS = os.environ.get("SLIME_LONG_TESTS") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # CI has 90 minutes on a 2-core machine whose speed varies 2x from day to day: the few tests that each run a whole
    # real stack for minutes, and whose parts other tests cover, run by hand (docs/status.md records the last pass).
    if LONG_TESTS:
        return
    skip = pytest.mark.skip(reason="a long real-stack run: set SLIME_LONG_TESTS=1 to run it (not in CI, for time)")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_runtime():
    """One Ray runtime for the whole test session (starting one takes seconds)."""
    import ray

    if not ray.is_initialized():
        # Logical CPUs: placement bundles are counted, not pinned, so tests may ask for more than the machine has.
        # address="local": a runtime of its own, even while another process's Ray cluster runs on this machine.
        ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
