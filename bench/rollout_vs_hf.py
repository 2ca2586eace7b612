"""Rollout on CPU: SGLang (through slime's ``GenerateClient``) against HF ``generate``, tokens/s by batch and size.

For each model size (build_tiny_model's Qwen2 layout, fp32) one SGLang CPU server is started the way the rollout
backend starts it. Each repeat then runs, alternating which goes first, a batch of B prompts (20-token chat prompts
from the CPU demo's task) x 32 new tokens (EOS ignored, so every request makes exactly 32; temperature 1):

* ``sglang``: B concurrent ``/generate`` requests through ``slime_sglang.client.GenerateClient``, as a rollout;
* ``hf``: one batched ``model.generate`` (left padding, sampling, ``min_new_tokens=32``) on the same prompts.

To see where SGLang's time goes it also times, per size: one request of 1 new token (the fixed latency of HTTP +
tokenizer manager + scheduler), and one batched request carrying all B prompts (the same work with one HTTP call).

    python bench/rollout_vs_hf.py [--sizes 1M 10M 30M] [--batches 8 64 256] [--repeats 3]
"""

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from common import emit_row, load_average, set_bench_env, spread, this_command, verdict

SIZES = {"1M": (128, 4), "10M": (256, 10), "30M": (512, 8), "10M-i23": (384, 6)}  # (hidden, layers); 10M-i23: issue 23
NEW_TOKENS = 32


def prompts(tokenizer, batch: int) -> list[list[int]]:
    texts = [f"What is {i % 10} + {i * 7 % 10}?" for i in range(batch)]
    chats = [
        tokenizer.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=False)
        for t in texts
    ]
    return [tokenizer(chat, add_special_tokens=False)["input_ids"] for chat in chats]


def sglang_batch(client, token_lists: list[list[int]]) -> int:
    from slime.types import Sample

    params = {"max_new_tokens": NEW_TOKENS, "temperature": 1.0, "ignore_eos": True}

    async def run() -> list[Sample]:
        samples = [Sample(index=i, tokens=list(t)) for i, t in enumerate(token_lists)]
        done = await asyncio.gather(*(client.generate(s, params) for s in samples))
        await client.aclose()
        return done

    return sum(s.response_length for s in asyncio.run(run()))


def sglang_one_request(url: str, token_lists: list[list[int]], new_tokens: int) -> int:
    """All prompts in one ``/generate`` call (SGLang accepts a list of input_ids)."""
    import httpx

    params = {"max_new_tokens": new_tokens, "temperature": 1.0, "ignore_eos": True}
    payload = {"input_ids": token_lists, "sampling_params": params, "return_logprob": True}
    response = httpx.post(url + "/generate", json=payload, timeout=600, trust_env=False)
    response.raise_for_status()
    answers = response.json()
    return sum(a["meta_info"]["completion_tokens"] for a in (answers if isinstance(answers, list) else [answers]))


def hf_batch(model, tokenizer, token_lists: list[list[int]]) -> int:
    import torch

    width = max(len(t) for t in token_lists)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(t)) + t for t in token_lists])
    mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in token_lists])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0,
            max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, pad_token_id=pad,
        )  # fmt: skip
    return (out.shape[1] - width) * len(token_lists)


def bench_size(workdir: Path, size: str, batches: list[int], repeats: int) -> None:
    import torch
    from sglang_server import start_server
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slime_sglang.client import GenerateClient
    from slime_testkit.tiny_model import build_tiny_model

    hidden, layers = SIZES[size]
    model_dir = build_tiny_model(workdir / size, hidden_size=hidden, num_layers=layers, num_heads=4, num_kv_heads=2)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    params = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    server = start_server(model_dir, ["--max-total-tokens", str(max(batches) * 64 + 1024)])
    print(f"{size}: {params / 1e6:.2f}M parameters; SGLang server started in {time.perf_counter() - start:.1f} s")
    try:
        sglang_one_request(server.url, prompts(tokenizer, 8), NEW_TOKENS)  # warm-up
        hf_batch(model, tokenizer, prompts(tokenizer, 8))
        for batch in batches:
            token_lists = prompts(tokenizer, batch)
            rates: dict[str, list[float]] = {"sglang": [], "hf": [], "sglang_one_call": []}
            latency = []
            loads = []
            for repeat in range(repeats):
                loads.append(load_average())
                order = ["sglang", "hf", "sglang_one_call"] if repeat % 2 == 0 else ["sglang_one_call", "hf", "sglang"]
                for side in order:
                    start = time.perf_counter()
                    if side == "sglang":
                        tokens = sglang_batch(GenerateClient(server.url, concurrency=batch), token_lists)
                    elif side == "hf":
                        tokens = hf_batch(model, tokenizer, token_lists)
                    else:
                        tokens = sglang_one_request(server.url, token_lists, NEW_TOKENS)
                    rates[side].append(tokens / (time.perf_counter() - start))
                start = time.perf_counter()
                sglang_one_request(server.url, token_lists[:1], 1)
                latency.append(time.perf_counter() - start)
            ratios = [s / h for s, h in zip(rates["sglang"], rates["hf"], strict=True)]
            print(
                f"  batch {batch:>4}: sglang {spread(rates['sglang'])} tok/s, "
                f"one call {spread(rates['sglang_one_call'])} tok/s, hf {spread(rates['hf'])} tok/s; "
                f"1-token request {spread(latency)} s; load {min(loads)}-{max(loads)}",
                flush=True,
            )
            emit_row(
                f"rollout, {size} model, batch {batch} x {NEW_TOKENS} new tokens: SGLang CPU (slime client) vs HF "
                "generate",
                f"SGLang {spread(rates['sglang'])} tok/s (all prompts in one HTTP call: "
                f"{spread(rates['sglang_one_call'])}); HF {spread(rates['hf'])} tok/s; one 1-token request "
                f"{spread(latency)} s",
                f"SGLang/HF tokens/s {spread(ratios)}",
                verdict(">= 1x (close the gap)", ratios, lambda r: r >= 1),
                this_command(),
            )
    finally:
        server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1M", "10M", "30M"], choices=list(SIZES))
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    set_bench_env()
    workdir = Path(tempfile.mkdtemp(prefix="slime-bench-rollout-"))
    for size in options.sizes:
        bench_size(workdir, size, options.batches, options.repeats)


if __name__ == "__main__":
    main()
