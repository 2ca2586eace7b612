"""GPU check of the megatron train backend: a ~1B Qwen2-shaped model in bf16, a few RL steps, tokens/s and MFU.

Run on a machine with one GPU (under 5 minutes, most of it writing and loading the random checkpoint):

    uv run python bench/gpu/megatron_train_1b.py [--steps 5] [--peak-tflops 989]

It builds a randomly initialised Qwen2-shaped model (hidden 2048, 16 layers, 16 heads / 4 KV heads, SwiGLU 5632,
vocabulary 151936, tied embeddings: ~1.03B parameters) as an HF checkpoint, then trains it through
``MegatronTrainBackend`` exactly as a run would (bf16, megatron DDP + Adam, GRPO loss) on random token batches
(64 samples of 1024 tokens, 768 of them response, micro-batches of 4). It prints one JSON line per step and a
summary: tokens/s and MFU = 3 x forward FLOPs / step time / peak bf16 FLOPs (989 TFLOPS: H100/H200 dense).
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

SHAPE = dict(hidden_size=2048, num_layers=16, num_heads=16, num_kv_heads=4, intermediate_size=5632, vocab_size=151936)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps (the first one is warmup)")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--micro-batch-size", type=int, default=4)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak")
    options = parser.parse_args()

    import torch

    from slime.config.arguments import parse_args
    from slime.metrics.perf import decoder_fwd_flops
    from slime.types import TrainBatch
    from slime_megatron.backend import MegatronTrainBackend
    from slime_megatron.hf_config import HFModelConfig
    from slime_testkit.tiny_model import build_tiny_model

    if not torch.cuda.is_available():
        raise SystemExit("this check needs a GPU")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    workdir = Path(tempfile.mkdtemp(prefix="slime-bench-"))
    start = time.perf_counter()
    model_dir = build_tiny_model(workdir / "model", arch="qwen2", tie_word_embeddings=True, **SHAPE)
    print(json.dumps({"event": "checkpoint_written", "seconds": round(time.perf_counter() - start, 1)}), flush=True)

    args = parse_args(
        [
            "--hf-checkpoint", str(model_dir),
            "--rollout-batch-size", str(options.samples // 8), "--n-samples-per-prompt", "8",
            "--global-batch-size", str(options.samples), "--micro-batch-size", str(options.micro_batch_size),
            "--actor-num-gpus-per-node", "1", "--bf16", "--lr", "1e-6", "--weight-decay", "0.1",
            "--no-gradient-accumulation-fusion",  # its CUDA kernel comes with Apex, which this machine may lack
        ]
    )  # fmt: skip
    backend = MegatronTrainBackend()
    start = time.perf_counter()
    backend.init(args, rank=0, world_size=1)
    print(json.dumps({"event": "initialised", "seconds": round(time.perf_counter() - start, 1)}), flush=True)

    hf = HFModelConfig.load(model_dir)
    generator = torch.Generator().manual_seed(0)
    response = options.seq_len * 3 // 4
    batch = TrainBatch(
        tokens=torch.randint(0, hf.vocab_size, (options.samples, options.seq_len), generator=generator).tolist(),
        response_lengths=[response] * options.samples,
        loss_masks=[[1] * response] * options.samples,
        rewards=torch.randn(options.samples, generator=generator).tolist(),
        raw_rewards=[0.0] * options.samples,
        truncated=[False] * options.samples,
        sample_indices=list(range(options.samples)),
    )
    flops = 3 * decoder_fwd_flops(hf.raw, [options.seq_len] * options.samples)
    times = []
    for step in range(options.steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        metrics = backend.train(step, batch)[0]
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        times.append(seconds)
        report = {
            "step": step,
            "seconds": round(seconds, 3),
            "tokens_per_s": round(options.samples * options.seq_len / seconds),
            "mfu": round(flops / seconds / (options.peak_tflops * 1e12), 4),
            "loss": metrics["loss"],
            "grad_norm": metrics["grad_norm"],
        }
        print(json.dumps(report), flush=True)
    steady = times[1:] or times
    seconds = sum(steady) / len(steady)
    summary = {
        "device": torch.cuda.get_device_name(),
        "parameters": sum(p.numel() for p in backend.trainer.trainable.model.parameters()),
        "tokens_per_s": round(options.samples * options.seq_len / seconds),
        "mfu": round(flops / seconds / (options.peak_tflops * 1e12), 4),
        "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1),
    }
    print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":
    main()
