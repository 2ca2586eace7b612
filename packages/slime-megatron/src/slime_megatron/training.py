"""Running micro-batches through megatron-core's pipeline schedules: forward-only passes and optimizer steps.

``get_forward_backward_func`` picks the schedule for the pipeline size (no pipelining, or 1F1B across stages). Loss
and outputs exist only on the last pipeline stage; ``broadcast_from_last_stage`` hands them to the other stages.
"""

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.pipeline_parallel import get_forward_backward_func

from slime_megatron.batches import MicroBatch
from slime_megatron.moe_losses import step_losses
from slime_megatron.optimizer import Trainable

# (micro-batch, logits [b, seq, vocab]) -> (loss scalar, detached per-micro-batch outputs)
LossFn = Callable[[MicroBatch, torch.Tensor], tuple[torch.Tensor, dict[str, Any]]]


# Runs before each micro-batch's forward (routing replay queues the micro-batch's routes).
BeforeForward = Callable[[MicroBatch], None] | None


def _run_schedule(
    model: torch.nn.Module,
    micro_batches: list[MicroBatch],
    loss_fn: LossFn,
    device: torch.device,
    forward_only: bool,
    before_forward: BeforeForward = None,
) -> list[dict[str, Any]]:
    def forward_step(data_iterator, model):
        batch = next(data_iterator)
        if before_forward is not None:
            before_forward(batch)
        output = model(batch.tokens.to(device), batch.position_ids.to(device), None)
        return output, partial(loss_fn, batch)

    return get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=iter(micro_batches),
        model=[model],
        num_microbatches=len(micro_batches),
        # Shapes of pipeline messages; with several stages they vary and are exchanged (variable_seq_lengths).
        seq_length=max(batch.tokens.shape[1] for batch in micro_batches),
        micro_batch_size=max(batch.tokens.shape[0] for batch in micro_batches),
        forward_only=forward_only,
    )


def broadcast_from_last_stage(value: Any) -> Any:
    """``value`` of the last pipeline stage, on every stage of this rank's pipeline."""
    if parallel_state.get_pipeline_model_parallel_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(
        box,
        src=parallel_state.get_pipeline_model_parallel_last_rank(),
        group=parallel_state.get_pipeline_model_parallel_group(),
    )
    return box[0]


@torch.no_grad()
def forward_only(
    model: torch.nn.Module,
    micro_batches: list[MicroBatch],
    compute: Callable[[MicroBatch, torch.Tensor], dict[str, Any]],
    device: torch.device,
    before_forward: BeforeForward = None,
) -> list[dict[str, Any]]:
    """``compute(micro_batch, logits)`` of every micro-batch, on every pipeline stage."""

    def loss_fn(batch: MicroBatch, logits: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        return torch.zeros((), device=logits.device), compute(batch, logits)

    model.eval()
    try:
        outputs = _run_schedule(model, micro_batches, loss_fn, device, forward_only=True, before_forward=before_forward)
    finally:
        model.train()
    return broadcast_from_last_stage(outputs if parallel_state.is_pipeline_last_stage() else None)


def _sum_over_data_parallel(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    names = sorted(metrics)
    if not names:
        return {}
    values = torch.stack([metrics[name].double() for name in names])  # on the device the group communicates on
    dist.all_reduce(values, group=parallel_state.get_data_parallel_group())
    return dict(zip(names, values.tolist(), strict=True))


def train_step(
    trainable: Trainable,
    micro_batches: list[MicroBatch],
    loss_fn: LossFn,
    device: torch.device,
    before_forward: BeforeForward = None,
) -> dict[str, float]:
    """One optimizer step over this rank's micro-batches; the step's metrics, on every rank.

    ``loss_fn`` returns each micro-batch's share of the step's loss (its reducer divides by the whole step's counts),
    so shares add up over micro-batches and data-parallel ranks. Megatron divides each micro-batch's loss by the
    number of micro-batches and DDP averages gradients over data-parallel ranks; scaling by both undoes that.
    """
    scale = len(micro_batches) * parallel_state.get_data_parallel_world_size()

    def scaled_loss_fn(batch: MicroBatch, logits: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        loss, metrics = loss_fn(batch, logits)
        return loss * scale, metrics

    model, optimizer = trainable.model, trainable.optimizer
    model.train()
    model.zero_grad_buffer()
    optimizer.zero_grad()
    outputs = _run_schedule(
        model, micro_batches, scaled_loss_fn, device, forward_only=False, before_forward=before_forward
    )
    router_losses = step_losses(model.config, len(micro_batches))
    _, grad_norm, _ = optimizer.step()
    # The rates this step used; the scheduler then sets the next step's.
    learning_rates = [group["lr"] for group in optimizer.param_groups]
    trainable.scheduler.step(increment=1)

    metrics: dict[str, float] | None = None
    if parallel_state.is_pipeline_last_stage():
        summed: dict[str, torch.Tensor] = {}
        for output in outputs:
            for name, value in output.items():
                summed[name] = summed.get(name, 0) + value.detach()
        metrics = _sum_over_data_parallel(summed)
    metrics = dict(broadcast_from_last_stage(metrics))
    metrics.update(router_losses)
    metrics["grad_norm"] = float(grad_norm) if grad_norm is not None else 0.0
    for index, lr in enumerate(learning_rates):
        metrics[f"lr-pg_{index}"] = lr
    return metrics
