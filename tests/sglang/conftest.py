"""One real SGLang deployment per test session: two CPU engines behind one real sglang-router.

A CPU server takes 30-45 s to start here, so every test that needs one shares this deployment. Tests that change
weights put the original weights back before they end.
"""

from pathlib import Path

import pytest
import torch

from slime.config.arguments import parse_args
from slime_testkit.tiny_model import build_tiny_model

# Tests that replace an engine run after every other test of the shared deployment.
LAST = ("test_sglang_fault_tolerance.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests without the shared deployment first (a server start competes with running engines for 2 cores), then
    # those that use it, then those that replace one of its engines. Stable: keeps the order within each group.
    def group(item: pytest.Item) -> int:
        if item.path.name in LAST:
            return 2
        return 1 if "engine" in getattr(item, "fixturenames", ()) else 0

    items.sort(key=group)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("sglang") / "model", seed=0)


@pytest.fixture(scope="session")
def engine_args(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("sglang-run")
    return parse_args(
        [
            "--hf-checkpoint",
            str(tiny_model),
            "--rollout-num-gpus",
            "2",  # two engines of one "GPU" (here: CPU process) each
            "--rollout-num-gpus-per-engine",
            "1",
            "--output-dir",
            str(out),
            "--sglang-device",
            "cpu",
            "--sglang-max-total-tokens",
            "8192",
            "--sglang-max-running-requests",
            "32",
            "--use-fault-tolerance",
            "--rollout-health-check-interval",
            "5",
            "--rollout-health-check-timeout",
            "20",
            "--sglang-server-start-timeout",
            "900",  # a server start took over 7 min on a 2-core machine at load 20-30
            "--sglang-request-retry-timeout",
            "300",
            "--update-weight-buffer-size",
            str(256 * 1024),  # several buckets even for the tiny model
            "--sglang-load-snapshot-publish-interval",
            "1",  # /v1/loads as of the last decode step (SGLang's default: every 15), for tests that wait on it
        ]
    )


@pytest.fixture(scope="session")
def engine(ray_runtime, engine_args):
    from slime_sglang.engine import SGLangRolloutEngine
    from slime_sglang.processes import pid_alive

    engine = SGLangRolloutEngine(engine_args)  # its engine actors run on this Ray runtime's node, unplaced
    engine.start()
    try:
        yield engine
    finally:
        pids = engine.pids()
        engine.shutdown()
        survivors = [p for p in pids if pid_alive(p)]
        assert not survivors, f"processes left after shutdown: {survivors}"


@pytest.fixture(scope="session")
def hf_model(tiny_model: Path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model.eval()
    return model


@torch.no_grad()
def greedy_reference(model, prompt_ids: list[int], max_new_tokens: int) -> tuple[list[int], list[float]]:
    """HF transformers' greedy continuation and the log-prob of each chosen token (no EOS stop)."""
    ids = torch.tensor([prompt_ids])
    tokens, log_probs = [], []
    for _ in range(max_new_tokens):
        logits = model(ids).logits[0, -1].float()
        next_id = int(torch.argmax(logits))
        tokens.append(next_id)
        log_probs.append(float(torch.log_softmax(logits, dim=-1)[next_id]))
        ids = torch.cat([ids, torch.tensor([[next_id]])], dim=1)
    return tokens, log_probs


@pytest.fixture(scope="session")
def hf_greedy():
    return greedy_reference
