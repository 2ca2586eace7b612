"""One training rank of the megatron backend: model, reference weights, RL train step, checkpoints, weight export.

Import this module only after ``cpu_compat.enable()`` on a machine without a GPU (``backend.py`` does that).

Per rollout (``train``): split the samples into ``num_steps_per_rollout`` optimizer steps of ``--global-batch-size``
samples; each data-parallel rank takes a contiguous share of every step. Reference log-probs (only for a KL term)
and old-policy log-probs (only when the policy moves within the rollout, or the reward needs them) come from
forward-only passes; advantages from slime's estimator; then one ``train_step`` per step with slime's loss.
"""

import argparse
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from megatron.core import parallel_state

from slime.metrics.perf import decoder_fwd_flops, train_perf_metrics
from slime.metrics.rollout import train_data_means
from slime.rl.advantages import AdvantageBatch, compute_advantages_and_returns
from slime.rl.losses import LossBatch, resolve_loss
from slime.rl.opd import reverse_kl
from slime.rl.reduction import make_reducer
from slime.rl.rollout_data import postprocess_rollout_data
from slime.types import TrainBatch
from slime.weights.disk import write_hf_checkpoint
from slime_megatron import checkpoint
from slime_megatron.batches import (
    MicroBatch,
    balanced_shares,
    make_micro_batches,
    pack_samples,
    response_logits,
    split_by_count,
    split_by_tokens,
    split_to_count,
)
from slime_megatron.device_features import refuse_gpu_only_features, refuse_missing_gpu_kernels
from slime_megatron.hf_mapping import (
    copy_weights,
    gather_hf_state_dict,
    hf_shards,
    load_hf_weights,
    snapshot_weights,
)
from slime_megatron.logprobs import chunked_log_probs
from slime_megatron.model import build_model
from slime_megatron.model_shape import load_hf_config
from slime_megatron.optimizer import build_trainable
from slime_megatron.parallel import init_parallel
from slime_megatron.routing_replay import RECORD, REPLAY, ROUTE, RoutingReplay
from slime_megatron.slime_loss import call_slime_loss
from slime_megatron.training import forward_only, train_step


@dataclass
class _RolloutData:
    """Per-sample tensors of this rank's samples (response-only, by sample id), what the loss reads."""

    loss_masks: dict[int, torch.Tensor]
    advantages: dict[int, torch.Tensor]
    old_log_probs: dict[int, torch.Tensor] | None
    ref_log_probs: dict[int, torch.Tensor] | None
    rollout_log_probs: dict[int, torch.Tensor] | None
    opd_reverse_kl: dict[int, torch.Tensor] | None  # --use-opd: student minus teacher log-probs, logged per step
    # Read only by slime's form of custom loss, whose batch holds them as slime's does.
    returns: dict[int, torch.Tensor]
    values: dict[int, torch.Tensor] | None
    teacher_log_probs: dict[int, torch.Tensor] | None


# Step metrics that are not train/* metrics: the policy's mean log-prob (and entropy, --use-rollout-entropy) before
# the update, when the first step's forward is the only one.
_POLICY_LOG_PROBS = "policy_log_probs"
_POLICY_ENTROPY = "policy_entropy"


def step_token_count(batch: TrainBatch, step_index: int, global_batch: int) -> float:
    """The trained (loss-masked) tokens of optimizer step ``step_index``, over all data-parallel ranks."""
    first = step_index * global_batch
    return float(sum(np.sum(batch.loss_masks[i], dtype=np.int64) for i in range(first, first + global_batch)))


def needs_reference(args: argparse.Namespace) -> bool:
    return bool(args.use_kl_loss or args.kl_coef != 0)


def has_megatron_teacher(args: argparse.Namespace) -> bool:
    return bool(args.use_opd and args.opd_type == "megatron")


class MegatronTrainer:
    """Builds the model from ``--hf-checkpoint``, resumes ``--load``; every method is collective over all ranks."""

    value_head = False  # the policy: a language-model head (PPO's critic, critic.py, has a value head)

    def __init__(self, args: argparse.Namespace, rank: int, world_size: int, on_cpu: bool) -> None:
        if not args.hf_checkpoint:
            raise ValueError("the megatron backend needs --hf-checkpoint (the model's config and initial weights)")
        self.args = args
        self.on_cpu = on_cpu
        init_parallel(
            rank=rank,
            world_size=world_size,
            tp_size=args.tensor_model_parallel_size,
            pp_size=args.pipeline_model_parallel_size,
            ep_size=args.expert_model_parallel_size,
            seed=args.seed,
            on_cpu=on_cpu,
        )
        self.device = torch.device("cpu") if on_cpu else torch.device("cuda", torch.cuda.current_device())
        self.hf = load_hf_config(args.hf_checkpoint)
        if on_cpu:
            refuse_gpu_only_features(args)
        else:
            refuse_missing_gpu_kernels(args)
        self.margs, self.config, model = build_model(args, self.hf, world_size, on_cpu, self.value_head)
        self.ref_weights = self._reference_weights(model) if needs_reference(args) else None
        # --use-opd --opd-type megatron: the teacher is the same architecture with other weights, run as the
        # reference is (swapped in for a forward-only pass).
        self.teacher_weights = self._teacher_weights(model) if has_megatron_teacher(args) else None
        self.replay = (
            RoutingReplay(model, self.config.num_layers, self.config.moe_router_topk, self.config.sequence_parallel)
            if args.use_routing_replay
            else None
        )
        load_hf_weights(model, self.hf, args.hf_checkpoint)
        total_steps = args.lr_decay_iters or (args.num_rollout or 0) * (args.num_steps_per_rollout or 1) or 1
        self.trainable = build_trainable(model, self.config, self.margs, total_steps)
        self.start_rollout_id = 0
        if args.load and checkpoint.latest_iteration(args.load) is not None:
            iteration = checkpoint.load_checkpoint(
                args.load, self.trainable, load_optimizer=not args.no_load_optim, load_rng=not args.no_load_rng
            )
            self.start_rollout_id = iteration + 1
        # --keep-old-actor: CPU copies of the weights sent to the engines, by weight version (the rollout id from
        # which the engines generate with them).
        self.sent_weights: dict[int, dict[str, torch.Tensor]] = {}
        self.timings: dict[str, float] = {}  # seconds of this rollout's log-prob passes, by phase
        self.perf: dict[str, float] = {}  # the last rollout's perf/* metrics
        self.train_data_means: dict[str, float] = {}

    def _reference_weights(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """This rank's reference weights on CPU: ``--ref-load`` (megatron checkpoint or HF directory), else HF's."""
        ref = self.args.ref_load
        if ref and checkpoint.latest_iteration(ref) is not None:
            checkpoint.load_model_weights(ref, model)
            return snapshot_weights(model)
        return hf_shards(model, self.hf, ref or self.args.hf_checkpoint)

    def _teacher_weights(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """This rank's teacher weights on CPU, from the megatron checkpoint ``--opd-teacher-load`` (its newest
        iteration, or ``--opd-teacher-ckpt-step``)."""
        checkpoint.load_model_weights(self.args.opd_teacher_load, model, self.args.opd_teacher_ckpt_step)
        return snapshot_weights(model)

    # -- log-probs -------------------------------------------------------------------------------------------------

    def _response_log_probs(
        self, packed: torch.Tensor, targets: torch.Tensor, entropy: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probs of ``targets`` under ``packed`` response logits at the rollout temperature (``entropy``: as
        ``chunked_log_probs`` takes it)."""
        return chunked_log_probs(
            packed,
            targets,
            self.hf.vocab_size,
            self.args.rollout_temperature,
            self.args.log_probs_chunk_size,
            entropy=entropy,
        )

    def _log_probs_of(self, batch: MicroBatch, logits: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        packed, targets = response_logits(logits, batch)
        log_probs, entropy = self._response_log_probs(
            packed, targets, "detached" if self.args.use_rollout_entropy else "none"
        )
        # To CPU: outputs may travel to other pipeline stages as pickled objects.
        outputs = {"log_probs": [lp.cpu() for lp in log_probs.split(batch.response_lengths)]}
        if entropy is not None:
            outputs["entropy"] = [e.cpu() for e in entropy.split(batch.response_lengths)]
        return outputs

    def _micro_batches(self, batch: TrainBatch, sample_ids: list[int], max_tokens: int | None) -> list[MicroBatch]:
        if self.args.use_dynamic_batch_size:
            groups = split_by_tokens(sample_ids, [len(t) for t in batch.tokens], max_tokens)
        else:
            groups = split_by_count(sample_ids, self.args.micro_batch_size)
        if parallel_state.get_expert_model_parallel_world_size() > 1:
            # Token budgets give ranks different counts; expert-parallel peers must run as many as the busiest.
            count = torch.tensor([len(groups)], device=self.device)
            dist.all_reduce(count, op=dist.ReduceOp.MAX, group=parallel_state.get_expert_model_parallel_group())
            groups = split_to_count(groups, int(count.item()))
        # Sequence parallelism splits each micro-batch's sequence evenly over the tensor-parallel ranks.
        multiple = self.config.tensor_model_parallel_size if self.config.sequence_parallel else 1
        return make_micro_batches(batch.tokens, batch.response_lengths, groups, pad_to_multiple=multiple)

    def _routing(self, mode: str, micro_batches: list[MicroBatch]) -> contextlib.AbstractContextManager:
        """Routers in ``mode`` (routing_replay.py) for one run over ``micro_batches``, with routing replay on."""
        if self.replay is None:
            return contextlib.nullcontext(None)
        return self.replay.routing(mode, micro_batches)

    def forward_log_probs(
        self, batch: TrainBatch, sample_ids: list[int], routing: str = ROUTE
    ) -> dict[str, dict[int, torch.Tensor]]:
        """Response log-probs of the current weights for ``sample_ids`` (``"log_probs"``, and ``"entropy"`` with
        ``--use-rollout-entropy``), each by sample id, on every pipeline stage; MoE routers in ``routing`` mode."""
        return self.forward_per_sample(batch, sample_ids, self._log_probs_of, routing)

    def forward_per_sample(
        self,
        batch: TrainBatch,
        sample_ids: list[int],
        compute: Callable[[MicroBatch, torch.Tensor], dict[str, list[torch.Tensor]]],
        routing: str = ROUTE,
    ) -> dict[str, dict[int, torch.Tensor]]:
        """A forward-only pass over ``sample_ids``: each field ``compute`` gives per micro-batch sample, by sample
        id, on this rank's device and every pipeline stage."""
        micro_batches = self._micro_batches(batch, sample_ids, self.args.log_probs_max_tokens_per_gpu)
        with self._routing(routing, micro_batches) as before_forward:
            outputs = forward_only(self.trainable.model, micro_batches, compute, self.device, before_forward)
        result: dict[str, dict[int, torch.Tensor]] = {}
        for micro_batch, output in zip(micro_batches, outputs, strict=True):
            for field, values in output.items():
                moved = [value.to(self.device) for value in values]
                result.setdefault(field, {}).update(zip(micro_batch.sample_ids, moved, strict=True))
        return result

    def forward_ref_log_probs(self, batch: TrainBatch, sample_ids: list[int]) -> dict[str, dict[int, torch.Tensor]]:
        """Like ``forward_log_probs`` with the reference weights swapped in (and the actor's swapped back)."""
        return self._forward_with(self.ref_weights, batch, sample_ids)

    def _forward_with(
        self, weights: dict[str, torch.Tensor], batch: TrainBatch, sample_ids: list[int], routing: str = ROUTE
    ) -> dict[str, dict[int, torch.Tensor]]:
        actor = snapshot_weights(self.trainable.model)
        copy_weights(self.trainable.model, weights)
        try:
            return self.forward_log_probs(batch, sample_ids, routing)
        finally:
            copy_weights(self.trainable.model, actor)

    def weights_sent(self, weight_version: str) -> None:
        """The engines now generate with the current weights (``weight_version``): keep a copy for
        ``--keep-old-actor``."""
        if self.args.keep_old_actor:
            self.sent_weights[int(weight_version)] = snapshot_weights(self.trainable.model)

    def _old_actor_forward(
        self, batch: TrainBatch, sample_ids: list[int], routing: str
    ) -> dict[str, dict[int, torch.Tensor]]:
        """``--keep-old-actor``: each sample's log-probs under the weights that generated it (by the weight version
        it carries), not the current ones (with ``--async`` or ``--update-weights-interval`` they differ)."""
        by_version: dict[int, list[int]] = {}
        for i in sample_ids:
            version = batch.weight_versions[i] if batch.weight_versions else ""
            if not version.isdigit() or int(version) not in self.sent_weights:
                raise RuntimeError(
                    f"--keep-old-actor: sample {batch.sample_indices[i]} was generated with weights of version "
                    f"{version or 'unknown'}, which this trainer did not send (kept: {sorted(self.sent_weights)})"
                )
            by_version.setdefault(int(version), []).append(i)
        result: dict[str, dict[int, torch.Tensor]] = {}
        for version, ids in sorted(by_version.items()):
            for field, values in self._forward_with(self.sent_weights[version], batch, ids, routing).items():
                result.setdefault(field, {}).update(values)
        # Later rollouts are never generated with older weights than this one's (the staleness rule).
        for version in [v for v in self.sent_weights if v < min(by_version)]:
            del self.sent_weights[version]
        return result

    def compute_log_probs(self, batch: TrainBatch, sample_ids: list[int]) -> dict[int, torch.Tensor]:
        return self.forward_log_probs(batch, sample_ids)["log_probs"]

    def compute_ref_log_probs(self, batch: TrainBatch, sample_ids: list[int]) -> dict[int, torch.Tensor]:
        return self.forward_ref_log_probs(batch, sample_ids)["log_probs"]

    # -- training --------------------------------------------------------------------------------------------------

    def _step_sample_ids(self, lengths: list[int]) -> list[list[int]]:
        """For each optimizer step, the sample ids this data-parallel rank trains on: a contiguous share of the
        step's samples, or with ``--balance-data`` an equal number of samples holding an even share of its tokens."""
        num_samples = len(lengths)
        global_batch = self.args.global_batch_size or num_samples
        dp_size = parallel_state.get_data_parallel_world_size()
        dp_rank = parallel_state.get_data_parallel_rank()
        if num_samples % global_batch:
            raise ValueError(f"{num_samples} samples do not split into steps of --global-batch-size {global_batch}")
        # Micro-batches by count must fill every rank's share exactly; by token budget only the share must be even.
        micro_batch = 1 if self.args.use_dynamic_batch_size else self.args.micro_batch_size
        if global_batch % (dp_size * micro_batch):
            raise ValueError(
                f"--global-batch-size {global_batch} is not divisible by data-parallel size {dp_size} x "
                f"micro-batch size {micro_batch}"
            )
        per_rank = global_batch // dp_size
        steps = [list(range(start, start + global_batch)) for start in range(0, num_samples, global_batch)]
        if self.args.balance_data:
            return [balanced_shares(step, lengths, dp_size)[dp_rank] for step in steps]
        return [step[dp_rank * per_rank : (dp_rank + 1) * per_rank] for step in steps]

    def _rollout_data(
        self,
        rollout_id: int,
        batch: TrainBatch,
        sample_ids: list[int],
        num_steps: int,
        values: Sequence[np.ndarray] | None,
    ) -> _RolloutData:
        args = self.args
        # On the training device: advantage whitening all-reduces them over the data-parallel group (NCCL on GPU).
        device = self.device
        loss_masks = {i: torch.tensor(batch.loss_masks[i], dtype=torch.float32, device=device) for i in sample_ids}
        ref_log_probs = old_log_probs = rollout_log_probs = None
        # --use-rollout-entropy: the entropies of the passes that run, logged as rollout/entropy, rollout/ref_entropy.
        entropies: dict[str, dict[int, torch.Tensor] | None] = {}
        if batch.rollout_log_probs is not None:
            rollout_log_probs = {i: torch.tensor(batch.rollout_log_probs[i], device=device) for i in sample_ids}
        # PPO: the critic's values of the response tokens (MegatronCritic.train), by sample position.
        critic_values = None if values is None else {i: torch.from_numpy(values[i]).to(device) for i in sample_ids}
        # How the old-policy forward routes MoE tokens: as the engine did (R3), or recorded for the steps to replay.
        old_routing = ROUTE
        if self.replay is not None:
            self.replay.routes.clear()
            old_routing = REPLAY if args.use_rollout_routing_replay else RECORD
            if args.use_rollout_routing_replay:
                if batch.rollout_routed_experts is None:
                    raise ValueError("--use-rollout-routing-replay: the rollout's batch carries no routed experts")
                self.replay.set_rollout_routes(batch.tokens, batch.rollout_routed_experts, sample_ids)
        if self.ref_weights is not None:
            start = time.perf_counter()
            ref = self.forward_ref_log_probs(batch, sample_ids)
            ref_log_probs, entropies["ref_entropy"] = ref["log_probs"], ref.get("entropy")
            self.timings["ref_log_probs"] = time.perf_counter() - start
        teacher_log_probs = self._teacher_log_probs(batch, sample_ids) if args.use_opd else None
        if args.use_rollout_logprobs:
            if rollout_log_probs is None:
                raise ValueError("--use-rollout-logprobs needs the rollout engine's log-probs in the batch")
            old_log_probs = rollout_log_probs
        elif args.keep_old_actor:
            start = time.perf_counter()
            old = self._old_actor_forward(batch, sample_ids, old_routing)
            old_log_probs, entropies["entropy"] = old["log_probs"], old.get("entropy")
            self.timings["log_probs"] = time.perf_counter() - start
        elif num_steps > 1 or args.kl_coef != 0 or args.use_opd or old_routing == RECORD:
            # With one step per rollout and no KL in the reward, old == current (detached): the loss reuses them.
            # Recording routes for the steps to replay, or OPD's reverse KL, needs the pass in any case.
            start = time.perf_counter()
            old = self.forward_log_probs(batch, sample_ids, old_routing)
            old_log_probs, entropies["entropy"] = old["log_probs"], old.get("entropy")
            self.timings["log_probs"] = time.perf_counter() - start
        if args.compute_advantages_and_returns:
            advantages, returns = compute_advantages_and_returns(
                args,
                AdvantageBatch(
                    rewards=[batch.rewards[i] for i in sample_ids],
                    loss_masks=[loss_masks[i] for i in sample_ids],
                    log_probs=[old_log_probs[i] for i in sample_ids] if old_log_probs else None,
                    ref_log_probs=[ref_log_probs[i] for i in sample_ids] if ref_log_probs else None,
                    teacher_log_probs=[teacher_log_probs[i] for i in sample_ids] if teacher_log_probs else None,
                    values=[critic_values[i] for i in sample_ids] if critic_values else None,
                ),
                group=parallel_state.get_data_parallel_group(),
            )
        else:  # --disable-compute-advantages-and-returns (SFT, or a loss that reads neither): zeros, as in slime
            advantages = returns = [torch.zeros_like(loss_masks[i]) for i in sample_ids]
        computed = {"log_probs": old_log_probs, "ref_log_probs": ref_log_probs, "rollout_log_probs": rollout_log_probs}
        advantages, masks = self._postprocess(rollout_id, batch, sample_ids, loss_masks, advantages, returns, computed)
        loss_masks = dict(zip(sample_ids, masks, strict=True))
        opd_reverse_kl = None
        if teacher_log_probs is not None:
            opd_reverse_kl = {i: reverse_kl(old_log_probs[i], teacher_log_probs[i]) for i in sample_ids}
        data = _RolloutData(
            loss_masks=loss_masks,
            advantages=dict(zip(sample_ids, advantages, strict=True)),
            old_log_probs=old_log_probs,
            ref_log_probs=ref_log_probs,
            rollout_log_probs=rollout_log_probs,
            opd_reverse_kl=opd_reverse_kl,
            returns=dict(zip(sample_ids, returns, strict=True)),
            values=critic_values,
            teacher_log_probs=teacher_log_probs,
        )
        self.train_data_means = self._means_over_data_parallel(
            {
                "log_probs": old_log_probs,
                "ref_log_probs": ref_log_probs,
                "rollout_log_probs": rollout_log_probs,
                "advantages": data.advantages,
                "returns": data.returns,
                "values": critic_values,
                "teacher_log_probs": teacher_log_probs,
                "opd_reverse_kl": opd_reverse_kl,
                **entropies,
            },
            loss_masks,
            sample_ids,
        )
        return data

    def _teacher_log_probs(self, batch: TrainBatch, sample_ids: list[int]) -> dict[int, torch.Tensor]:
        """OPD's teacher log-probs of the sampled tokens: the megatron teacher's forward, or what an SGLang teacher
        gave the samples during the rollout (``Sample.teacher_log_probs``)."""
        if self.teacher_weights is not None:
            start = time.perf_counter()
            teacher = self._forward_with(self.teacher_weights, batch, sample_ids)["log_probs"]
            self.timings["teacher_log_probs"] = time.perf_counter() - start
            return teacher
        if batch.teacher_log_probs is None:
            raise ValueError("--use-opd --opd-type sglang: the rollout's batch carries no teacher log-probs")
        return {i: torch.tensor(batch.teacher_log_probs[i], device=self.device) for i in sample_ids}

    def _postprocess(
        self,
        rollout_id: int,
        batch: TrainBatch,
        sample_ids: list[int],
        loss_masks: dict[int, torch.Tensor],
        advantages: list[torch.Tensor],
        returns: list[torch.Tensor],
        log_probs: dict[str, dict[int, torch.Tensor] | None],
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``--rollout-data-postprocess-path`` on this rank's samples: their advantages and loss masks after it."""
        rollout_data = {
            "tokens": [batch.tokens[i] for i in sample_ids],
            "response_lengths": [batch.response_lengths[i] for i in sample_ids],
            "total_lengths": [len(batch.tokens[i]) for i in sample_ids],
            "loss_masks": [loss_masks[i] for i in sample_ids],
            "rewards": [batch.rewards[i] for i in sample_ids],
            "advantages": list(advantages),
            "returns": list(returns),
            **{name: None if values is None else [values[i] for i in sample_ids] for name, values in log_probs.items()},
        }
        postprocess_rollout_data(self.args, rollout_id, rollout_data)
        return rollout_data["advantages"], rollout_data["loss_masks"]

    def _means_over_data_parallel(
        self,
        fields: dict[str, dict[int, torch.Tensor] | None],
        loss_masks: dict[int, torch.Tensor],
        sample_ids: list[int],
    ) -> dict[str, float]:
        """``rollout/*``: each field's mean over the rollout's trained tokens and samples (slime's
        ``log_rollout_data``); a field this rollout did not compute (``None``) is left out."""
        per_sample = {name: [values[i] for i in sample_ids] for name, values in fields.items() if values is not None}
        means = train_data_means(per_sample, loss_masks=[loss_masks[i] for i in sample_ids])
        names = sorted(means)
        totals = torch.tensor([means[name] for name in names], dtype=torch.float64, device=self.device)
        # Every data-parallel rank trains an equal share of the samples: the mean of the ranks' means is the rollout's.
        dist.all_reduce(totals, group=parallel_state.get_data_parallel_group())
        totals /= parallel_state.get_data_parallel_world_size()
        return {f"rollout/{name}": value for name, value in zip(names, totals.tolist(), strict=True)}

    def _loss(
        self,
        data: _RolloutData,
        loss: tuple[Callable, bool],
        num_samples: int,
        num_tokens: float,
        batch: MicroBatch,
        logits: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One micro-batch's share of the step's loss; ``loss``: ``resolve_loss``'s function and whether it is in
        slime's form."""
        args = self.args

        def packed_of(per_sample: dict[int, torch.Tensor] | None) -> torch.Tensor | None:
            return pack_samples(per_sample, batch, logits.device)

        loss_masks = packed_of(data.loss_masks)
        # Denominators of the whole step (all micro-batches, all data-parallel ranks), so shares add up.
        reducer = make_reducer(
            batch.response_lengths,
            loss_masks,
            args.calculate_per_token_loss,
            num_samples=num_samples,
            num_tokens=num_tokens,
        )
        packed, targets = response_logits(logits, batch)
        loss_function, slime_form = loss
        if slime_form:
            # slime's f(args, batch, logits, sum_of_sample_mean) computes its log-probs itself. On a rollout of one
            # step the old-policy pass was skipped (old == current), yet slime's losses read batch["log_probs"] as
            # the old policy's: this forward's, detached, are those (and the policy's log-probs logged below).
            log_probs = entropy = None
            if data.old_log_probs is None:
                with torch.no_grad():
                    log_probs, entropy = self._response_log_probs(
                        packed, targets, "detached" if args.use_rollout_entropy else "none"
                    )
            loss, metrics = call_slime_loss(
                loss_function, args, batch, logits, self._slime_fields(data, batch, log_probs), reducer
            )
        else:
            # Entropy is always logged; it carries a gradient only when it is part of the loss.
            log_probs, entropy = self._response_log_probs(
                packed, targets, "grad" if args.entropy_coef != 0 else "detached"
            )
            loss_batch = LossBatch(
                response_lengths=batch.response_lengths,
                loss_masks=loss_masks,
                total_lengths=batch.total_lengths,
                log_probs=log_probs,
                entropy=entropy,
                old_log_probs=packed_of(data.old_log_probs),
                ref_log_probs=packed_of(data.ref_log_probs),
                rollout_log_probs=packed_of(data.rollout_log_probs),
                advantages=packed_of(data.advantages),
            )
            loss, metrics = loss_function(args, loss_batch, reducer)
        if data.opd_reverse_kl is not None:  # slime's train/opd_reverse_kl: the step's samples' teacher gap
            metrics["opd_reverse_kl"] = reducer(packed_of(data.opd_reverse_kl))
        if data.old_log_probs is None:
            # One step per rollout: these are the policy's log-probs before the update, whose mean slime logs as
            # rollout/log_probs; averaged per sample (as train_data_means does), whatever the loss reduction.
            per_sample = (
                make_reducer(batch.response_lengths, loss_masks, False, num_samples=num_samples)
                if args.calculate_per_token_loss
                else reducer  # the loss's own reducer is already this per-sample one
            )
            metrics[_POLICY_LOG_PROBS] = per_sample(log_probs.detach())
            if args.use_rollout_entropy:
                metrics[_POLICY_ENTROPY] = per_sample(entropy.detach())
        return loss, metrics

    def _slime_fields(
        self, data: _RolloutData, batch: MicroBatch, current_log_probs: torch.Tensor | None
    ) -> dict[str, list[torch.Tensor] | None]:
        """The micro-batch's per-sample data under slime's batch keys (``None``: not computed in this run).

        ``log_probs`` are the trainer's old-policy log-probs, or ``current_log_probs`` (packed, detached) where the
        old-policy pass was skipped. With ``--use-rollout-logprobs`` there are none, as in slime (the engine's are
        ``rollout_log_probs``).
        """

        def of(per_sample: dict[int, torch.Tensor] | None) -> list[torch.Tensor] | None:
            return None if per_sample is None else [per_sample[i].to(self.device) for i in batch.sample_ids]

        old_log_probs = None
        if current_log_probs is not None:
            old_log_probs = list(current_log_probs.split(batch.response_lengths))
        elif not self.args.use_rollout_logprobs:
            old_log_probs = of(data.old_log_probs)
        return {
            "loss_masks": of(data.loss_masks),
            "advantages": of(data.advantages),
            "returns": of(data.returns),
            "log_probs": old_log_probs,
            "ref_log_probs": of(data.ref_log_probs),
            "rollout_log_probs": of(data.rollout_log_probs),
            "teacher_log_probs": of(data.teacher_log_probs),
            "values": of(data.values),
        }

    def train(
        self, rollout_id: int, batch: TrainBatch, values: Sequence[np.ndarray] | None = None
    ) -> list[dict[str, float]]:
        """Optimizer steps on one rollout; ``values``: PPO's critic's values of each sample's response tokens."""
        train_start = time.perf_counter()
        self.timings = {}
        steps = self._step_sample_ids([len(tokens) for tokens in batch.tokens])
        mine = [i for step in steps for i in step]
        data = self._rollout_data(rollout_id, batch, mine, len(steps), values)
        global_batch = len(batch) // len(steps)
        loss = resolve_loss(self.args)

        actor_start = time.perf_counter()
        results = []
        for step_index, sample_ids in enumerate(steps):
            step_tokens = step_token_count(batch, step_index, global_batch)
            micro_batches = self._micro_batches(batch, sample_ids, self.args.max_tokens_per_gpu)
            loss_fn = partial(self._loss, data, loss, global_batch, step_tokens)
            with self._routing(REPLAY, micro_batches) as before_forward:
                metrics = train_step(self.trainable, micro_batches, loss_fn, self.device, before_forward)
            results.append(metrics)
        if self.replay is not None:
            self.replay.routes.clear()
        actor_time = time.perf_counter() - actor_start
        for name, field in ((_POLICY_LOG_PROBS, "log_probs"), (_POLICY_ENTROPY, "entropy")):
            if name in results[0]:
                self.train_data_means[f"rollout/{field}"] = results[0].pop(name)

        interval = self.args.ref_update_interval
        if interval is not None and (rollout_id + 1) % interval == 0:
            self.ref_weights = snapshot_weights(self.trainable.model)
        self._record_perf(batch, actor_time, time.perf_counter() - train_start)
        return results

    def _record_perf(self, batch: TrainBatch, actor_time: float, train_time: float) -> None:
        lengths = [len(tokens) for tokens in batch.tokens]
        self.perf = train_perf_metrics(
            {**self.timings, "actor_train": actor_time, "train": train_time},
            seq_lens=lengths,
            fwd_flops=decoder_fwd_flops(self.hf.raw, lengths),
            num_gpus=dist.get_world_size(),
        )

    # -- checkpoints and weights ----------------------------------------------------------------------------------

    def save(self, rollout_id: int) -> None:
        if self.args.save:
            checkpoint.save_checkpoint(self.args.save, rollout_id, self.trainable)
        if self.args.save_hf:
            self.save_hf(self.args.save_hf.format(rollout_id=rollout_id))

    def hf_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The whole model in HF names and layouts on global rank 0 (``None`` elsewhere); a collective."""
        return gather_hf_state_dict(self.trainable.model, self.hf)

    def save_hf(self, out_dir: str | Path) -> None:
        state = self.hf_state_dict()
        if state is not None:
            write_hf_checkpoint(state, self.args.hf_checkpoint, out_dir)
        dist.barrier()
