"""Engines and routers someone else started (``--rollout-external-engine-addrs``, ``--sglang-router-ip/port``), and
the router address slime hands to custom code (``args.sglang_router_ip/port``), against the shared deployment's
real servers and router: slime generates through them and leaves them running."""

import asyncio

import httpx
import pytest

from slime.config.arguments import parse_args
from slime.types import Sample
from slime_sglang.engine import SGLangRolloutEngine

pytestmark = pytest.mark.slow

GREEDY = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "ignore_eos": True, "max_new_tokens": 6}
PROMPTS = [[11, 42, 7, 99], [5, 6, 7], [300, 2, 150, 8, 9]]


def greedy(engine) -> list[list[int]]:
    async def run():
        return await asyncio.gather(
            *(engine.generate(Sample(index=i, tokens=list(p)), GREEDY) for i, p in enumerate(PROMPTS))
        )

    return [sample.tokens for sample in asyncio.run(run())]


def attach(tmp_path, *flags: str) -> SGLangRolloutEngine:
    args = parse_args(["--sglang-device", "cpu", "--output-dir", str(tmp_path), *flags])
    engine = SGLangRolloutEngine(args)
    engine.start()
    return engine


def test_external_engines_behind_the_router_slime_launches(engine, tmp_path) -> None:
    addrs = [url.removeprefix("http://") for url in engine.engine_urls]
    attached = attach(tmp_path, "--rollout-external-engine-addrs", *addrs)
    try:
        assert attached.servers == []  # nothing launched but the router
        assert sorted(attached.router.worker_urls()) == sorted(engine.engine_urls)
        assert greedy(attached) == greedy(engine)
        # What slime's own custom generate functions do: post to the router slime started, read from args.
        args = attached.args
        assert (args.sglang_router_ip, args.sglang_router_port) == (attached.router.host, attached.router.port)
        response = httpx.post(
            f"http://{args.sglang_router_ip}:{args.sglang_router_port}/generate",
            json={"input_ids": PROMPTS[0], "sampling_params": GREEDY},
            timeout=120,
        )
        assert response.json()["output_ids"] == greedy(engine)[0][len(PROMPTS[0]) :]
    finally:
        attached.shutdown()
    assert not attached.router.running()
    assert engine.health() == [True, True]  # the external engines were left running


def test_a_router_someone_else_started_with_its_engines(engine, tmp_path) -> None:
    addrs = [url.removeprefix("http://") for url in engine.engine_urls]
    router = engine.router
    attached = attach(
        tmp_path,
        "--sglang-router-ip", router.host, "--sglang-router-port", str(router.port),
        "--rollout-external-engine-addrs", *addrs,
    )  # fmt: skip
    try:
        assert attached.router.url == router.url
        assert greedy(attached) == greedy(engine)
    finally:
        attached.shutdown()
    assert router.running() and sorted(router.worker_urls()) == sorted(engine.engine_urls)
    assert engine.health() == [True, True]
