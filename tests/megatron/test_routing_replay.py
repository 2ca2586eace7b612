"""Routing replay on the megatron backend (one process, a tiny Qwen3-MoE): replayed routes decide the experts,
recorded routes replay to the same log-probs, training under replay (activation recomputation included) equals
training with the router's own choices when the routes are the router's own, and a real engine's routes bring the
trainer's log-probs closer to the engine's."""

import numpy as np
import pytest
import torch
from megatron_helpers import engine_rollout, make_args, make_batch, make_trainer

from slime.config.arguments import parse_args
from slime.errors import ConfigError
from slime_megatron.routing_replay import RECORD, REPLAY

RECOMPUTE = ("--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1")


def _max_gap(a: dict[int, torch.Tensor], b: dict[int, torch.Tensor]) -> float:
    return max((a[i] - b[i]).abs().max().item() for i in a)


def _engine_rows(routes: dict[int, torch.Tensor]) -> list[np.ndarray]:
    """Recorded routes as an engine reports them: one row per token but the last, layers x top-k wide."""
    return [routes[i][:-1].reshape(len(routes[i]) - 1, -1).numpy() for i in sorted(routes)]


def test_replayed_routes_decide_the_experts(world, tiny_moe_model):
    trainer = make_trainer(make_args(tiny_moe_model, "--use-routing-replay"))
    batch = make_batch(600)
    ids = list(range(len(batch)))
    routed = trainer.forward_log_probs(batch, ids)["log_probs"]

    recorded = trainer.forward_log_probs(batch, ids, RECORD)["log_probs"]
    assert _max_gap(recorded, routed) == 0
    routes = dict(trainer.replay.routes)
    assert routes[0].shape == (len(batch.tokens[0]), 3, 2)  # every token, 3 MoE layers, top-2

    assert _max_gap(trainer.forward_log_probs(batch, ids, REPLAY)["log_probs"], routed) < 1e-5
    # Other experts for every token: the replayed routes, not the router, decide.
    trainer.replay.routes = {i: (r + 1) % 4 for i, r in routes.items()}
    assert _max_gap(trainer.forward_log_probs(batch, ids, REPLAY)["log_probs"], routed) > 1e-2

    # The engine's layout (what SGLang returns): the same routes, the same log-probs.
    trainer.replay.set_rollout_routes(batch.tokens, _engine_rows(routes), ids)
    assert _max_gap(trainer.forward_log_probs(batch, ids, REPLAY)["log_probs"], routed) < 1e-5


def _assert_same(got: dict[str, float], expected: dict[str, float]) -> None:
    for name in ("loss", "pg_loss", "grad_norm"):
        assert got[name] == pytest.approx(expected[name], rel=1e-5, abs=1e-6), name


@pytest.mark.parametrize("recompute", [(), RECOMPUTE], ids=["plain", "recompute"])
def test_training_on_replayed_routes(world, tiny_moe_model, recompute):
    batch = make_batch(600)
    ids = list(range(len(batch)))
    routed = make_trainer(make_args(tiny_moe_model, *recompute)).train(0, batch)
    # --use-routing-replay: both optimizer steps of the rollout route as the old policy's forward did.
    recorded = make_trainer(make_args(tiny_moe_model, "--use-routing-replay", *recompute))
    replayed = recorded.train(0, batch)
    _assert_same(replayed[0], routed[0])  # the first step's weights are the old policy's: the same routes
    assert replayed[1]["pg_loss"] != routed[1]["pg_loss"]  # the second step's router would choose differently

    # R3 with the routes the old policy chose: the same two steps as recording them.
    recorder = make_trainer(make_args(tiny_moe_model, "--use-routing-replay"))
    recorder.forward_log_probs(batch, ids, RECORD)
    batch.rollout_routed_experts = _engine_rows(recorder.replay.routes)
    r3 = make_trainer(make_args(tiny_moe_model, "--use-rollout-routing-replay", *recompute))
    for got, expected in zip(r3.train(0, batch), replayed, strict=True):
        _assert_same(got, expected)

    # Routed elsewhere, the same rollout trains differently, and the routers still learn.
    batch.rollout_routed_experts = [(rows + 1) % 4 for rows in batch.rollout_routed_experts]
    shifted = make_trainer(make_args(tiny_moe_model, "--use-rollout-routing-replay", *recompute))
    router = next(p for name, p in shifted.trainable.model.named_parameters() if name.endswith("router.weight"))
    before = router.detach().clone()
    steps = shifted.train(0, batch)
    assert steps[0]["grad_norm"] != pytest.approx(routed[0]["grad_norm"], rel=1e-3)
    assert not torch.equal(router.detach(), before)


def test_routing_replay_needs_experts_and_the_engines_routes(tiny_models, tiny_moe_model):
    dense = ["--hf-checkpoint", str(tiny_models["qwen3"])]
    for flag in ("--use-routing-replay", "--use-rollout-routing-replay"):
        with pytest.raises(ConfigError) as error:
            parse_args([*dense, flag])
        assert str(error.value) == (
            f"{flag} replays mixture-of-experts routing, and this model has no experts (--num-experts)"
        )
    assert parse_args(["--hf-checkpoint", str(tiny_moe_model), "--use-rollout-routing-replay"]).use_routing_replay


@pytest.mark.slow
def test_the_engines_routes_bring_the_trainers_log_probs_closer_to_the_engines(
    ray_runtime, world, tiny_moe_model, tmp_path
):
    """R3's purpose, measured: an engine in bf16 (as on GPUs) routes some tokens to other experts than the fp32
    trainer does; replaying the engine's routes removes those tokens' large log-prob gaps."""
    flags = ("--use-rollout-routing-replay", "--sglang-dtype", "bfloat16", "--sglang-enable-deterministic-inference")
    samples, batch = engine_rollout(tiny_moe_model, tmp_path, *flags, num_prompts=16, max_new_tokens=24)
    ids = list(range(len(samples)))
    trainer = make_trainer(make_args(tiny_moe_model, "--use-rollout-routing-replay", "--rollout-temperature", "1.0"))
    own = trainer.forward_log_probs(batch, ids, RECORD)["log_probs"]
    flipped = 0  # tokens the trainer's routers send to other experts than the engine's did
    for i, sample in enumerate(samples):
        own_rows = trainer.replay.routes[i][:-1].numpy()  # [tokens, layers, top-k]
        engine_rows = sample.rollout_routed_experts.reshape(own_rows.shape)
        flipped += int((np.sort(own_rows, -1) != np.sort(engine_rows, -1)).any(axis=(1, 2)).sum())
    trainer.replay.set_rollout_routes(batch.tokens, [s.rollout_routed_experts for s in samples], ids)
    replayed = trainer.forward_log_probs(batch, ids, REPLAY)["log_probs"]

    def gaps(log_probs: dict[int, torch.Tensor]) -> torch.Tensor:
        return torch.cat([(log_probs[i] - torch.tensor(s.rollout_log_probs)).abs() for i, s in enumerate(samples)])

    own_gaps, replayed_gaps = gaps(own), gaps(replayed)
    print(f"routing flips {flipped}; gap without replay mean {own_gaps.mean():.4f} max {own_gaps.max():.4f}, "
          f"with replay mean {replayed_gaps.mean():.4f} max {replayed_gaps.max():.4f}")  # fmt: skip
    assert flipped > 0  # bf16 moved some tokens to other experts
    assert replayed_gaps.mean() < own_gaps.mean()
    assert replayed_gaps.max() < 0.5 * own_gaps.max()  # the flipped tokens' gaps are gone
