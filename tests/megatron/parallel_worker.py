"""One rank of test_megatron_parallel.py's two-process run (``RANK``, ``MASTER_PORT`` set by the test).

Usage: parallel_worker.py HF_DIR CHECKPOINT_DIR RESULTS_JSON [moe|glm4_moe|critic]. In one process group of two it trains
the same two rollouts under each layout of ``LAYOUTS`` (``MOE_LAYOUTS`` with ``moe``, ...) in turn, saves the TP=2 run after its
first rollout, and rank 0 writes every step's metrics, the first rollout's ``rollout/*`` means and the weights after
the last rollout of the ``*_sgd`` layouts to RESULTS_JSON.
"""

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file

from slime_megatron import cpu_compat

# Layout name -> its flags. TP=2 runs with sequence parallelism (micro-batches padded to a multiple of 2) and
# recompute (full and uniform, or selective); PP=2 also recomputes whole blocks and packs micro-batches by token
# budget, so stages exchange varying shapes; the distributed optimizer's run balances tokens over the DP ranks and
# computes log-probs in chunks; the per-token loss's denominator spans ranks; SGD is compared with a plain SGD run;
# slime's form of custom loss reads TP-split packed logits.
LAYOUTS = {
    "tp2": [
        "--tensor-model-parallel-size", "2", "--sequence-parallel",
        "--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1",
        "--accumulate-allreduce-grads-in-fp32", "--attention-softmax-in-fp32",
    ],
    "tp2_selective_recompute": [
        "--tensor-model-parallel-size", "2", "--sequence-parallel", "--recompute-granularity", "selective",
    ],
    "pp2": [
        "--pipeline-model-parallel-size", "2", "--use-dynamic-batch-size", "--max-tokens-per-gpu", "24",
        "--recompute-granularity", "full", "--recompute-method", "block", "--recompute-num-layers", "1",
    ],
    "dp2": [],
    "dp2_distributed_optimizer": ["--use-distributed-optimizer", "--balance-data", "--log-probs-chunk-size", "3"],
    "dp2_per_token_loss": ["--calculate-per-token-loss"],
    "dp2_sgd": ["--optimizer", "sgd"],
    # slime's form of custom loss over the vocabulary split across TP ranks: trains like the built-in loss.
    "tp2_slime_loss": [
        "--tensor-model-parallel-size", "2", "--sequence-parallel",
        "--loss-type", "custom_loss", "--custom-loss-function-path", "megatron_helpers.slime_policy_loss",
    ],
}  # fmt: skip

# Expert parallelism 2 (each rank holds 2 of the tiny Qwen3-MoE's 4 experts) with the routers' load-balancing loss;
# by token budget the two ranks cut their shares into different numbers of micro-batches (1 and 2) unless the split
# evens them out; SGD with lr 1 makes the weights' change the gradient itself.
EP2 = ["--expert-model-parallel-size", "2", "--expert-tensor-parallel-size", "1", "--moe-aux-loss-coeff", "0.01"]
MOE_LAYOUTS = {
    "ep2_token_budget": [*EP2, "--use-dynamic-batch-size", "--max-tokens-per-gpu", "18"],
    "ep2_sgd": [*EP2, "--optimizer", "sgd", "--lr", "1.0"],
}  # fmt: skip
# GLM-4.5: tensor and expert parallelism 2 on the same two ranks (the shared expert split over TP like a dense MLP,
# each routed expert whole on its EP rank, the router biases replicated). Routing statistics count the padding
# sequence parallelism adds (slime passes megatron-core no padding mask), so the load-balancing loss and the
# expert-bias update would differ from one process: both off here.
GLM4_MOE_LAYOUTS = {
    "tp2_ep2_sgd": [
        "--expert-model-parallel-size", "2", "--expert-tensor-parallel-size", "1", "--tensor-model-parallel-size", "2",
        "--sequence-parallel", "--moe-router-bias-update-rate", "0", "--optimizer", "sgd", "--lr", "1.0",
    ],
}  # fmt: skip


# PPO's critic: its value head's gradient under sequence parallelism is summed over the TP ranks; the values each
# DP rank reports are its half of the samples.
CRITIC_LAYOUTS = {name: LAYOUTS[name] for name in ("tp2", "pp2", "dp2")}


def main() -> None:
    hf_dir, checkpoint_dir, results_path = sys.argv[1:4]
    cpu_compat.enable()
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{os.environ['MASTER_PORT']}", rank=rank, world_size=2)
    if sys.argv[4:] == ["critic"]:
        run_critic_layouts(hf_dir, results_path, rank)
        return
    layouts = {"moe": MOE_LAYOUTS, "glm4_moe": GLM4_MOE_LAYOUTS}[sys.argv[4]] if sys.argv[4:] else LAYOUTS
    import megatron_helpers as helpers  # after enable(): it imports megatron-core model modules

    batch = helpers.make_batch(600)
    original = load_file(Path(hf_dir) / "model.safetensors")
    results, exports, means, weights = {}, {}, {}, {}
    for name, flags in layouts.items():
        save = ["--save", f"{checkpoint_dir}/{name}"] if name in ("tp2", "dp2_distributed_optimizer") else []
        args = helpers.make_args(hf_dir, "--actor-num-gpus-per-node", "2", *flags, *save)
        trainer = helpers.make_trainer(args)
        exported = trainer.hf_state_dict()  # gathered over TP and pipeline stages onto rank 0
        if rank == 0:
            exports[name] = sorted(exported) == sorted(original) and all(
                torch.equal(exported[key], value) for key, value in original.items()
            )
        metrics = helpers.train_rollouts(trainer, batch, range(1))
        means[name] = trainer.train_data_means  # rollout/* of rollout 0, over the data-parallel ranks
        if save:
            trainer.save(0)
        results[name] = metrics + helpers.train_rollouts(trainer, batch, range(1, 2))
        if name.endswith("_sgd"):
            trained = trainer.hf_state_dict()  # collective
            if rank == 0:
                weights[name] = {key: value.tolist() for key, value in trained.items()}
    if rank == 0:
        with open(results_path, "w") as f:
            json.dump({"steps": results, "exports": exports, "means": means, "weights": weights}, f)
    helpers.destroy_world()


def run_critic_layouts(hf_dir: str, results_path: str, rank: int) -> None:
    """Two rollouts of the critic in each of ``CRITIC_LAYOUTS``; rank 0 writes every step's metrics and the values
    of the first rollout, merged over the ranks that report them."""
    import megatron_helpers as helpers

    from slime_megatron.critic import MegatronCritic
    from slime_megatron.roles import role_args

    batch = helpers.make_batch(600)
    results = {}
    for name, flags in CRITIC_LAYOUTS.items():
        args = helpers.make_args(hf_dir, "--advantage-estimator", "ppo", "--actor-num-gpus-per-node", "2", *flags)
        critic = MegatronCritic(role_args(args, "critic"), rank, 2, on_cpu=True)
        steps, values = critic.train_critic(0, batch)
        more, _ = critic.train_critic(1, batch)
        reported = [None, None]
        dist.all_gather_object(reported, {i: v.tolist() for i, v in values.items()})
        merged = {str(i): v for part in reported for i, v in part.items()}
        results[name] = {"steps": steps + more, "values": merged, "reported": [sorted(p) for p in reported]}
    if rank == 0:
        with open(results_path, "w") as f:
            json.dump(results, f)
    helpers.destroy_world()


if __name__ == "__main__":
    main()
