"""GPU check of ``--colocate``: Megatron (bf16) and one SGLang engine on the same GPU, weights through CUDA IPC.

NOT RUN YET: it needs SGLang on a GPU machine, and the project's lent GPU machine has no SGLang (no network; its
wheels are too large to carry). On a machine with one GPU and the workspace installed (a few minutes):

    uv run python bench/gpu/colocate_check.py

It builds the CPU demo's task on a Qwen2-shaped model (hidden 512, 4 layers, head dim 128: SGLang's GPU attention
kernels take it) and runs three GRPO rollouts through slime's own loop (``slime.loop.run_rollouts``) with
``--colocate`` (so ``--offload-train`` and ``--offload-rollout``): after each generation the engine releases its
memory, the trainer onloads, trains and offloads, the engine resumes and takes the weights. Then it checks:

- the weights went to the engine through CUDA IPC (``CudaIpcWeightSender``, chosen because the engine shares train
  rank 0's GPU);
- the engine holds the trainer's weights bit for bit (SGLang's ``/get_weights_by_name`` against the trainer's
  HF-named tensors, for parameters SGLang keeps unfused);
- the device memory the engine holds while released (free memory seen by this process before and after a release);
- the engine's greedy tokens against HF ``generate`` with the trainer's weights on the same GPU (reported: bf16
  kernels differ, so a near-tie may pick another token).

One JSON line per result; the last line is a summary with ``"ok"`` (the weights check and the transport).
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNFUSED = ["model.embed_tokens.weight", "model.layers.0.mlp.down_proj.weight", "model.norm.weight"]


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def trainer_weights(trainer) -> dict:
    """Train rank 0's HF-named weights (a few, on the host), read in the rank while they are offloaded."""
    import ray

    def read(self):
        backend = self.backend
        with backend._weights_on_device():
            state = backend._require_trainer().hf_state_dict()
        return {name: state[name].float().cpu() for name in UNFUSED}

    return ray.get(trainer.actors[0].__ray_call__.remote(read))


def sender_kind(trainer) -> str:
    import ray

    def read(self):
        from slime_sglang import weight_updates

        return sorted((kind, type(sender).__name__) for kind, sender in weight_updates._senders.items())

    return ray.get(trainer.actors[0].__ray_call__.remote(read))


def main() -> None:
    import httpx
    import ray
    import torch

    from slime.config.arguments import parse_args
    from slime.loop import release, run_rollouts
    from slime.plugins import resolve
    from slime.ray.placement import create_placement
    from slime.ray.rollout_manager import RolloutManager
    from slime.ray.train_group import TrainGroup

    if not torch.cuda.is_available():
        raise SystemExit("this check needs a GPU")
    workdir = Path(tempfile.mkdtemp(prefix="slime-colocate-"))
    prepare = [sys.executable, str(ROOT / "examples/cpu-demo/prepare.py"), "--out", str(workdir)]
    subprocess.run([*prepare, "--hidden-size", "512", "--num-layers", "4"], check=True)
    args = parse_args(
        [
            "--train-backend", "megatron", "--rollout-backend", "sglang", "--colocate",
            "--actor-num-gpus-per-node", "1", "--rollout-num-gpus", "1", "--bf16", "--no-gradient-accumulation-fusion",
            "--hf-checkpoint", str(workdir / "model"), "--prompt-data", str(workdir / "data/train.jsonl"),
            "--input-key", "prompt", "--label-key", "label", "--apply-chat-template", "--rm-type", "math",
            "--advantage-estimator", "grpo", "--rollout-batch-size", "8", "--n-samples-per-prompt", "4",
            "--rollout-max-response-len", "32", "--global-batch-size", "32", "--micro-batch-size", "8",
            "--lr", "1e-4", "--num-rollout", "3", "--sglang-mem-fraction-static", "0.3",
            "--output-dir", str(workdir / "out"),
        ]
    )  # fmt: skip
    ray.init(num_gpus=1, include_dashboard=False, log_to_driver=False)
    placement = create_placement(args)
    manager = ray.remote(num_cpus=0)(RolloutManager).remote(args, placement)
    trainer = TrainGroup(args, resolve("train_backends", args.train_backend), placement)
    results = {}
    try:
        ray.get(manager.start.remote())
        run_rollouts(args, manager, trainer)  # three rollouts in slime's colocated order
        kinds = sender_kind(trainer)
        results["cuda_ipc"] = kinds == [("cuda_ipc", "CudaIpcWeightSender")]
        emit(check="transport", senders=kinds, ok=results["cuda_ipc"])

        url = ray.get(manager.__ray_call__.remote(lambda self: self.engine.engine_urls[0]))
        expected = trainer_weights(trainer)
        for name, tensor in expected.items():
            reply = httpx.post(f"{url}/get_weights_by_name", json={"name": name, "truncate_size": 64}, timeout=60)
            served = torch.tensor(reply.json(), dtype=torch.float32)
            held = tensor[: served.shape[0]]
            results[f"weights:{name}"] = torch.equal(served, held)
            gap = float((served - held).abs().max())
            emit(check="weights", name=name, equal=results[f"weights:{name}"], max_gap=gap)

        free_before = torch.cuda.mem_get_info()[0]
        ray.get(manager.__ray_call__.remote(lambda self: self.engine.release_memory()))
        free_released = torch.cuda.mem_get_info()[0]
        ray.get(manager.__ray_call__.remote(lambda self: self.engine.resume_memory()))
        emit(check="release", freed_gib=(free_released - free_before) / 2**30)

        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(workdir / "model")
        hf = AutoModelForCausalLM.from_pretrained(workdir / "model", dtype=torch.bfloat16).cuda().eval()

        def full_state(self):
            backend = self.backend
            with backend._weights_on_device():
                return {name: t.cpu() for name, t in backend._require_trainer().hf_state_dict().items()}

        hf.load_state_dict(ray.get(trainer.actors[0].__ray_call__.remote(full_state)), strict=False)
        rows = [json.loads(line) for line in (workdir / "data/train.jsonl").read_text().splitlines()[:8]]
        same = 0
        for row in rows:
            ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True)
            params = {"temperature": 0.0, "max_new_tokens": 16}
            served = httpx.post(f"{url}/generate", json={"input_ids": ids, "sampling_params": params}, timeout=60)
            output = hf.generate(torch.tensor([ids]).cuda(), max_new_tokens=16, do_sample=False)[0, len(ids) :]
            same += served.json()["output_ids"] == output.tolist()[: len(served.json()["output_ids"])]
        emit(check="greedy", prompts=len(rows), equal_to_hf=same)
    finally:
        release(manager, trainer.actors, placement)
        ray.shutdown()
    emit(summary=True, ok=all(results.values()), results=results)


if __name__ == "__main__":
    main()
