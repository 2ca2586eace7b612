"""GPU check of the megatron backend's numerics: a tiny random model's log-probs (fp32, on the GPU) against HF
transformers' on the same GPU, and for the MoE models (Qwen3-MoE, GLM-4.5) routing replay's recorded routes
replaying to the same log-probs.

    python bench/gpu/logprobs_match_hf.py qwen3        # or qwen3_moe, glm4_moe; one model per process

Prints one JSON line: the largest |megatron - HF| log-prob over 8 random sequences (and for an MoE model the largest
|replayed - recorded|). The CPU suite checks the same on CPU (tests/megatron/); this is the GPU path (SDPA attention,
megatron's CUDA layers) that the CPU machines cannot run.
"""

import json
import os
import sys
import tempfile
from pathlib import Path


def main() -> None:
    arch = sys.argv[1] if len(sys.argv) > 1 else "qwen3"
    import torch
    from transformers import AutoModelForCausalLM

    from slime.config.arguments import parse_args
    from slime.types import RaggedArray, TrainBatch
    from slime_megatron.backend import MegatronTrainBackend
    from slime_testkit.tiny_model import build_tiny_glm4_moe_model, build_tiny_model, build_tiny_moe_model

    if not torch.cuda.is_available():
        raise SystemExit("this check needs a GPU")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29534")
    workdir = Path(tempfile.mkdtemp(prefix="slime-gpu-"))
    shape = {"hidden_size": 128, "num_layers": 3, "num_heads": 4, "num_kv_heads": 2, "vocab_size": 600, "seed": 0}
    if arch == "qwen3_moe":
        model_dir = build_tiny_moe_model(workdir / arch, mlp_only_layers=(), tie_word_embeddings=False, **shape)
    elif arch == "glm4_moe":
        model_dir = build_tiny_glm4_moe_model(workdir / arch, **shape)
    else:
        model_dir = build_tiny_model(workdir / arch, arch=arch, **shape)
    moe = arch in ("qwen3_moe", "glm4_moe")
    extra = ["--use-routing-replay"] if moe else []
    args = parse_args(
        ["--hf-checkpoint", str(model_dir), "--actor-num-gpus-per-node", "1", "--no-gradient-accumulation-fusion"]
        + extra
    )
    backend = MegatronTrainBackend()
    backend.init(args, rank=0, world_size=1)
    trainer = backend.trainer

    generator = torch.Generator().manual_seed(0)
    tokens = [torch.randint(3, 600, (12 + 5 * i,), generator=generator).tolist() for i in range(8)]
    responses = [4 + i for i in range(8)]
    batch = TrainBatch(
        tokens=RaggedArray.from_lists(tokens, "i"),
        response_lengths=responses,
        loss_masks=RaggedArray.from_lists([[1] * r for r in responses], "b"),
        rewards=[0.0] * 8,
        raw_rewards=[0.0] * 8,
        truncated=[False] * 8,
        sample_indices=list(range(8)),
    )
    ids = list(range(8))
    ours = trainer.compute_log_probs(batch, ids)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).cuda().eval()
    gap = 0.0
    for i, (sequence, response) in enumerate(zip(tokens, responses, strict=True)):
        with torch.no_grad():
            logits = hf(torch.tensor([sequence], device="cuda")).logits[0].float()
        log_probs = torch.log_softmax(logits[len(sequence) - response - 1 : -1], dim=-1)
        expected = log_probs.gather(-1, torch.tensor(sequence[-response:], device="cuda")[:, None])[:, 0]
        gap = max(gap, (ours[i].to("cuda") - expected).abs().max().item())
    report = {"arch": arch, "device": torch.cuda.get_device_name(), "max_logprob_gap_vs_hf": gap}
    if moe:
        from slime_megatron.routing_replay import RECORD, REPLAY

        recorded = trainer.forward_log_probs(batch, ids, RECORD)["log_probs"]
        replayed = trainer.forward_log_probs(batch, ids, REPLAY)["log_probs"]
        report["max_replay_gap"] = max((recorded[i] - replayed[i]).abs().max().item() for i in ids)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
