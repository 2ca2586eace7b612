"""A small single-process train backend on HF transformers, for core's own tests of the loop.

It trains for real with core's RL math (log-probs at the rollout temperature, advantages, policy loss with the
engine's log-probs for TIS and the mismatch metrics, Adam) and checkpoints atomically, so the loop, resume and
weight-sync wiring are tested without Megatron-core. It is not a backend users run: the Megatron backend has its own
tests, and runs use it.
"""

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from slime.backends import WeightReceiver
from slime.files import atomic_write, fresh_staging_dir, publish_dir
from slime.rl.advantages import AdvantageBatch, compute_advantages_and_returns
from slime.rl.logprobs import log_probs_from_logits
from slime.rl.losses import LossBatch, compute_loss
from slime.rl.reduction import make_reducer
from slime.rl.rollout_data import postprocess_rollout_data
from slime.types import TrainBatch
from slime.weights.disk import unshared_tensors
from slime_testkit.call_log import record_call

POINTER = "latest_checkpointed_iteration.txt"


def latest_iteration(checkpoint_dir: str | Path) -> int | None:
    pointer = Path(checkpoint_dir) / POINTER
    return int(pointer.read_text().strip()) if pointer.exists() else None


class HFTrainer:
    def init(self, args: argparse.Namespace, rank: int = 0, world_size: int = 1) -> int:
        from transformers import AutoModelForCausalLM

        if world_size != 1:
            raise ValueError("HFTrainer trains in one process")
        self.args = args
        torch.manual_seed(args.seed)
        self.model = AutoModelForCausalLM.from_pretrained(args.hf_checkpoint, dtype=torch.float32)
        # The test trainer has no optimizer flags of its own; --lr comes from a backend's flags when installed.
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=getattr(args, "lr", 1e-5))
        iteration = latest_iteration(args.load) if args.load else None
        if iteration is None:
            return 0
        folder = Path(args.load) / f"iter_{iteration:07d}"
        self.model.load_state_dict(load_file(folder / "model.safetensors"), strict=False)
        self.model.tie_weights()
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        return iteration + 1

    def _log_probs(self, tokens: Sequence[int], response_length: int) -> torch.Tensor:
        ids = torch.tensor(tokens, dtype=torch.long)[None]
        logits = self.model(input_ids=ids).logits[0, :-1]
        targets = ids[0, 1:]
        response = slice(len(tokens) - 1 - response_length, len(tokens) - 1)
        return log_probs_from_logits(logits[response], targets[response], self.args.rollout_temperature)

    def train(self, rollout_id: int, batch: TrainBatch) -> list[dict[str, float]]:
        args = self.args
        record_call(args.output_dir, "train")
        masks = [torch.tensor(mask, dtype=torch.float32) for mask in batch.loss_masks]
        # The engine's log-probs: TIS weights and --get-mismatch-metrics compare the trainer's against them.
        rollout = None
        if batch.rollout_log_probs is not None:
            rollout = [torch.tensor(lp, dtype=torch.float32) for lp in batch.rollout_log_probs]
        with torch.no_grad():
            old = [self._log_probs(t, n) for t, n in zip(batch.tokens, batch.response_lengths, strict=True)]
        advantages, _ = compute_advantages_and_returns(
            args, AdvantageBatch(rewards=batch.rewards, loss_masks=masks, log_probs=old)
        )
        rollout_data = {
            "tokens": [list(tokens) for tokens in batch.tokens],
            "response_lengths": list(batch.response_lengths),
            "total_lengths": [len(tokens) for tokens in batch.tokens],
            "loss_masks": masks,
            "rewards": list(batch.rewards),
            "advantages": advantages,
            "log_probs": old,
            "rollout_log_probs": rollout,
        }
        postprocess_rollout_data(args, rollout_id, rollout_data)
        masks, advantages = rollout_data["loss_masks"], rollout_data["advantages"]
        step_metrics = []
        per_step = args.global_batch_size
        for start in range(0, len(batch), per_step):
            chosen = range(start, start + per_step)
            lengths = [batch.response_lengths[i] for i in chosen]
            log_probs = torch.cat([self._log_probs(batch.tokens[i], batch.response_lengths[i]) for i in chosen])
            loss_batch = LossBatch(
                response_lengths=lengths,
                loss_masks=torch.cat([masks[i] for i in chosen]),
                total_lengths=[len(batch.tokens[i]) for i in chosen],
                log_probs=log_probs,
                old_log_probs=torch.cat([old[i] for i in chosen]),
                advantages=torch.cat([advantages[i] for i in chosen]),
                rollout_log_probs=None if rollout is None else torch.cat([rollout[i] for i in chosen]),
            )
            reducer = make_reducer(lengths, loss_batch.loss_masks, args.calculate_per_token_loss)
            loss, metrics = compute_loss(args, loss_batch, reducer)
            self.optimizer.zero_grad()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), getattr(args, "clip_grad", 1.0))
            self.optimizer.step()
            step_metrics.append({**{k: float(v) for k, v in metrics.items()}, "grad_norm": float(grad_norm)})
        return step_metrics

    def rollout_metrics(self) -> dict[str, float]:
        return {}

    def save(self, rollout_id: int) -> None:
        """Write ``iter_<id>`` under a temporary name, rename it, then move the pointer: a crash leaves the old one."""
        root = Path(self.args.save)
        final = root / f"iter_{rollout_id:07d}"
        staging = fresh_staging_dir(final)
        state = {name: tensor.contiguous() for name, tensor in self.model.state_dict().items()}
        save_file(unshared_tensors(state), staging / "model.safetensors")
        torch.save(self.optimizer.state_dict(), staging / "optimizer.pt")
        (staging / "meta.json").write_text(json.dumps({"rollout_id": rollout_id}))
        publish_dir(final)
        atomic_write(root / POINTER, str(rollout_id))

    def update_weights(self, receiver: WeightReceiver, weight_version: str) -> None:
        record_call(self.args.output_dir, "update_weights")
        with torch.no_grad():
            receiver.update_weights(self.model.state_dict().items(), weight_version)

    def offload(self) -> None:
        record_call(self.args.output_dir, "offload")  # nothing to free on CPU

    def onload(self) -> None:
        record_call(self.args.output_dir, "onload")
