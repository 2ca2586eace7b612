"""PPO's critic on megatron-core: the policy's architecture with a value head, trained on the clipped value loss.

Per rollout (``MegatronCritic.train_critic``, as slime's): the current critic's values of every response token,
returns from them by GAE (``--gamma``, ``--lambd``; the critic's rewards carry no KL term), then
``--num-steps-per-rollout`` optimizer steps of the clipped value loss (``--value-clip``) against those returns. The
values are what the actor's advantages are built from (``MegatronTrainer.train(..., values)``).

It is initialised as slime initialises it: the transformer from ``--hf-checkpoint``, a fresh value head (normal with
``--init-method-std``, zero bias); ``--load``'s critic checkpoint (``roles.py``: ``{load}/critic``) when there is one.
"""

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from megatron.core import parallel_state

from slime.rl.advantages import AdvantageBatch, compute_advantages_and_returns
from slime.rl.losses import LossBatch, value_loss
from slime.rl.reduction import make_reducer
from slime.types import TrainBatch
from slime_megatron.batches import MicroBatch, pack_samples, response_logits
from slime_megatron.trainer import MegatronTrainer, step_token_count
from slime_megatron.training import train_step


@dataclass
class _CriticData:
    """Per-sample tensors of this rank's samples (response-only, by sample id), what the value loss reads."""

    loss_masks: dict[int, torch.Tensor]
    old_values: dict[int, torch.Tensor]
    returns: dict[int, torch.Tensor]


class MegatronCritic(MegatronTrainer):
    """One rank of the critic's train group; every method is collective over the group's ranks."""

    value_head = True

    def _values_of(self, batch: MicroBatch, output: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        values, _ = response_logits(output, batch)  # the value of the state each response token was sampled in
        return {"values": [v.cpu() for v in values.squeeze(-1).split(batch.response_lengths)]}

    def forward_values(self, batch: TrainBatch, sample_ids: list[int]) -> dict[int, torch.Tensor]:
        """The current values of the response tokens of ``sample_ids``, by sample id, on every pipeline stage."""
        return self.forward_per_sample(batch, sample_ids, self._values_of)["values"]

    def _value_loss(
        self, data: _CriticData, num_samples: int, num_tokens: float, batch: MicroBatch, output: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        values, _ = response_logits(output, batch)

        def packed(per_sample: dict[int, torch.Tensor]) -> torch.Tensor:
            return pack_samples(per_sample, batch, output.device)

        loss_masks = packed(data.loss_masks)
        reducer = make_reducer(
            batch.response_lengths,
            loss_masks,
            self.args.calculate_per_token_loss,
            num_samples=num_samples,
            num_tokens=num_tokens,
        )
        loss_batch = LossBatch(
            response_lengths=batch.response_lengths,
            loss_masks=loss_masks,
            total_lengths=batch.total_lengths,
            values=values.squeeze(-1),
            old_values=packed(data.old_values),
            returns=packed(data.returns),
        )
        return value_loss(self.args, loss_batch, reducer)

    def train_critic(self, rollout_id: int, batch: TrainBatch) -> tuple[list[dict[str, float]], dict[int, np.ndarray]]:
        """Train on one rollout; each step's ``value_loss``, ``value_clipfrac``, ``grad_norm`` and learning rates,
        and the values before training of this rank's samples, by position in ``batch`` (from one rank of each
        data-parallel share only: the others hold copies; empty elsewhere)."""
        steps = self._step_sample_ids([len(tokens) for tokens in batch.tokens])
        mine = [i for step in steps for i in step]
        values = self.forward_values(batch, mine)
        loss_masks = {i: torch.tensor(batch.loss_masks[i], dtype=torch.float32, device=self.device) for i in mine}
        _, returns = compute_advantages_and_returns(
            self.args,
            AdvantageBatch(
                rewards=[batch.rewards[i] for i in mine],
                loss_masks=[loss_masks[i] for i in mine],
                values=[values[i] for i in mine],
            ),
            group=parallel_state.get_data_parallel_group(),
        )
        data = _CriticData(loss_masks, old_values=values, returns=dict(zip(mine, returns, strict=True)))
        global_batch = len(batch) // len(steps)
        results = []
        for step_index, sample_ids in enumerate(steps):
            micro_batches = self._micro_batches(batch, sample_ids, self.args.max_tokens_per_gpu)
            step_tokens = step_token_count(batch, step_index, global_batch)
            loss_fn = partial(self._value_loss, data, global_batch, step_tokens)
            results.append(train_step(self.trainable, micro_batches, loss_fn, self.device))
        first_of_share = (
            parallel_state.get_tensor_model_parallel_rank() == 0 and parallel_state.is_pipeline_first_stage()
        )
        return results, {i: values[i].cpu().numpy() for i in mine} if first_of_share else {}
