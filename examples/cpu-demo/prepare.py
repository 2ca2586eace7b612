"""Build the CPU demo's inputs: a tiny Qwen2-style model (or with ``--arch qwen3_moe`` a tiny Qwen3-MoE), its locally
trained tokenizer, and the arithmetic task.

    uv run python examples/cpu-demo/prepare.py --out outputs/cpu-demo

writes ``<out>/model`` (HF directory: config, random fp32 weights, tokenizer with a ChatML template) and
``<out>/data/{train,eval}.jsonl`` in the dapo-math format: ``{"prompt": [{"role": "user", "content": ...}],
"label": "7", "metadata": {"response": "\\boxed{7}"}}``. ``metadata.response`` is the answer the SFT stage trains on;
GRPO only uses the label. Same arguments, same files.
"""

import argparse
import json
import random
from pathlib import Path

from slime_testkit.tiny_model import build_tiny_model, build_tiny_moe_model
from slime_testkit.tokenizer import ENDOFTEXT, IM_END, IM_START

EVAL_FRACTION = 0.2  # of the 100 problems a + b (a, b in 0..9)
SFT_EPOCHS = 20
# The SFT demonstrations mostly answer plainly ("7"); only this share writes "\boxed{7}", the form the reward
# credits. SFT teaches the sums; GRPO has to discover from the reward that boxed answers pay.
SFT_BOXED_FRACTION = 0.25


def question(a: int, b: int) -> str:
    return f"What is {a} + {b}?"


def answer(a: int, b: int) -> str:
    return f"\\boxed{{{a + b}}}"  # the boxed form the `math` reward reads


def row(a: int, b: int, response: str | None = None) -> dict:
    return {
        "prompt": [{"role": "user", "content": question(a, b)}],
        "label": str(a + b),
        "metadata": {"response": response or answer(a, b)},
    }


def split_problems(seed: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Held-out eval problems a + b with a != b whose swapped twin b + a stays in train: the model can solve them
    by learning that the order of the operands does not matter, which a tiny model can; 100 facts are too few to
    learn addition itself from scratch."""
    rng = random.Random(seed)
    pairs = [(a, b) for a in range(10) for b in range(a + 1, 10)]  # 45 unordered pairs, a < b
    rng.shuffle(pairs)
    num_eval = round(EVAL_FRACTION * 100)
    held_out = [(a, b) if rng.random() < 0.5 else (b, a) for a, b in pairs[:num_eval]]
    train = [(a, b) for a in range(10) for b in range(10) if (a, b) not in held_out]
    rng.shuffle(train)
    return train, held_out


def tokenizer_corpus() -> list[str]:
    """Every conversation of the task, chat-formatted, so the BPE merges cover the prompt and answer text."""
    texts = []
    for a in range(10):
        for b in range(10):
            texts.append(
                f"{IM_START}user\n{question(a, b)}{IM_END}\n{IM_START}assistant\n{answer(a, b)}{IM_END}\n{ENDOFTEXT}"
            )
    return texts


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/cpu-demo"))
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arch", choices=["qwen2", "qwen3_moe"], default="qwen2")
    args = parser.parse_args()

    shape = {"hidden_size": args.hidden_size, "num_layers": args.num_layers, "num_heads": 4, "num_kv_heads": 2}
    if args.arch == "qwen3_moe":
        # 4 experts, 2 per token, each half the dense MLP: a token's MLP compute is the dense model's. Untied and
        # every layer sparse, as Qwen3-30B-A3B is (and as SGLang 0.5.23 serves Qwen3-MoE).
        model = build_tiny_moe_model(
            args.out / "model",
            **shape,
            moe_intermediate_size=2 * args.hidden_size,
            mlp_only_layers=(),
            tie_word_embeddings=False,
            seed=args.seed,
            corpus=tokenizer_corpus(),
        )
    else:
        model = build_tiny_model(args.out / "model", **shape, seed=args.seed, corpus=tokenizer_corpus())
    train, held_out = split_problems(args.seed)
    write_jsonl(args.out / "data" / "train.jsonl", [row(a, b) for a, b in train])
    write_jsonl(args.out / "data" / "eval.jsonl", [row(a, b) for a, b in held_out])
    # The SFT stage reads the training problems SFT_EPOCHS times, reshuffled each time, so that one rollout can hold
    # many optimizer steps (a rollout's batch must come from one pass over its prompt file).
    rng = random.Random(args.seed + 1)
    sft_rows = []
    for _ in range(SFT_EPOCHS):
        rng.shuffle(train)
        sft_rows.extend(row(a, b, None if rng.random() < SFT_BOXED_FRACTION else str(a + b)) for a, b in train)
    write_jsonl(args.out / "data" / "sft.jsonl", sft_rows)

    from safetensors.torch import load_file

    num_params = sum(t.numel() for t in load_file(model / "model.safetensors").values())
    print(f"model: {model} ({num_params / 1e6:.2f}M parameters); data: {len(train)} train, {len(held_out)} eval")


if __name__ == "__main__":
    main()
