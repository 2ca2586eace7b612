"""Build the tool demo's inputs: a tiny Qwen2-style model, its tokenizer, and two-digit products with a calculator.

    uv run python examples/tool-demo/prepare.py --out outputs/tool-demo

writes ``<out>/model`` (HF directory: config, random fp32 weights, a tokenizer whose chat template renders tool calls
and tool responses as Qwen2.5's does), ``<out>/data/{train,eval}.jsonl`` (``{"prompt": [{"role": "user", "content":
"What is 37 * 48?"}], "label": "1776"}``) and ``<out>/data/sft.jsonl`` (whole conversations for multi-turn SFT on
problems of their own: a few call the calculator, the rest answer at once). Same arguments, same files.
"""

import argparse
import json
import random
from pathlib import Path

from slime_testkit.tiny_model import build_tiny_model
from slime_testkit.tokenizer import QWEN_TOOLS_TEMPLATE

# Many distinct SFT problems, each seen about twice: with 400 problems seen 5 times the model learned to copy the
# numbers into a call but never the tool's result into its answer (examples/tool-demo/README.md, "Measured").
NUM_SFT = 4000  # SFT problems, none of them among the GRPO or eval problems
NUM_TRAIN = 400
NUM_EVAL = 50
SFT_EPOCHS = 2
# Only this share of the SFT conversations calls the calculator; the rest answer at once, with the right product,
# which a model this small cannot compute for unseen problems (sums it learned to add, ~0.6 held-out, so the demo
# multiplies). GRPO, on problems SFT never showed, has to find out from the reward that calling pays.
SFT_TOOL_FRACTION = 0.3


def question(a: int, b: int) -> str:
    return f"What is {a} * {b}?"


def tool_call(a: int, b: int) -> dict:
    return {"name": "calculator", "arguments": {"expression": f"{a} * {b}"}}


def conversation(a: int, b: int, use_tool: bool) -> list[dict]:
    answer = {"role": "assistant", "content": f"\\boxed{{{a * b}}}"}  # the form the `math` reward reads
    user = {"role": "user", "content": question(a, b)}
    if not use_tool:
        return [user, answer]
    call = {"role": "assistant", "content": "", "tool_calls": [tool_call(a, b)]}
    return [user, call, {"role": "tool", "content": str(a * b)}, answer]


def prompt_row(a: int, b: int) -> dict:
    return {"prompt": [{"role": "user", "content": question(a, b)}], "label": str(a * b)}


def tokenizer_corpus(pairs: list[tuple[int, int]]) -> list[str]:
    """The task's conversations as the chat template renders them, so the BPE merges cover their text."""
    from jinja2 import Environment

    environment = Environment()
    environment.filters["tojson"] = json.dumps  # as transformers renders chat templates
    template = environment.from_string(QWEN_TOOLS_TEMPLATE)
    return [template.render(messages=conversation(a, b, use_tool)) for a, b in pairs for use_tool in (False, True)]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/tool-demo"))
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    pairs = rng.sample([(a, b) for a in range(10, 100) for b in range(10, 100)], NUM_SFT + NUM_TRAIN + NUM_EVAL)
    sft, train, held_out = pairs[:NUM_SFT], pairs[NUM_SFT : NUM_SFT + NUM_TRAIN], pairs[NUM_SFT + NUM_TRAIN :]
    model = build_tiny_model(
        args.out / "model",
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        num_heads=4,
        num_kv_heads=2,
        seed=args.seed,
        corpus=tokenizer_corpus(pairs),
        chat_template=QWEN_TOOLS_TEMPLATE,
    )
    write_jsonl(args.out / "data" / "train.jsonl", [prompt_row(a, b) for a, b in train])
    write_jsonl(args.out / "data" / "eval.jsonl", [prompt_row(a, b) for a, b in held_out])
    sft_rows = []
    for _ in range(SFT_EPOCHS):
        rng.shuffle(sft)
        sft_rows += [{"messages": conversation(a, b, rng.random() < SFT_TOOL_FRACTION)} for a, b in sft]
    write_jsonl(args.out / "data" / "sft.jsonl", sft_rows)

    from safetensors.torch import load_file

    num_params = sum(t.numel() for t in load_file(model / "model.safetensors").values())
    sizes = f"{len(sft)} SFT, {len(train)} GRPO, {len(held_out)} eval"
    print(f"model: {model} ({num_params / 1e6:.2f}M parameters); problems: {sizes}")


if __name__ == "__main__":
    main()
