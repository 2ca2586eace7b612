"""A small rollout engine on HF transformers, for core's own tests of rollout logic.

It generates for real (a tiny model, token by token, with log-probs, stop tokens and abort), so tests of the
rollout and eval functions exercise real generation without starting SGLang servers. It is not a backend: the
SGLang backend has its own tests, and runs use it.
"""

import asyncio
import threading
from pathlib import Path
from typing import Any

import torch

from slime.types import Sample
from slime_testkit.call_log import record_call


class HFEngine:
    """Generates one request at a time in a worker thread; ``abort()`` cuts in-flight and queued requests."""

    def __init__(self, args: Any, placer: Any = None) -> None:  # generates in this process: no engine actor to place
        self._load(args.hf_checkpoint, args.seed, token_delay=0.0)
        self.output_dir = args.output_dir  # where the calls are recorded (slime_testkit.call_log)

    @classmethod
    def from_model(cls, model_dir: str | Path, seed: int = 0, token_delay: float = 0.0) -> "HFEngine":
        engine = cls.__new__(cls)
        engine._load(model_dir, seed, token_delay)
        engine.output_dir = None
        return engine

    def _load(self, model_dir: str | Path, seed: int, token_delay: float) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.generator = torch.Generator().manual_seed(seed)
        self.token_delay = token_delay  # seconds per token, so tests can abort mid-generation
        self.weight_version = "0"
        self._lock = threading.Lock()
        self._abort_epoch = 0
        self.requests = 0

    def start(self) -> None:
        pass

    def weight_receiver(self) -> Any:
        raise NotImplementedError("HFEngine loads weights from disk only: use --update-weight-transport disk")

    async def generate(self, sample: Sample, sampling_params: dict[str, Any]) -> Sample:
        epoch = self._abort_epoch
        self.requests += 1
        self._record("generate")
        return await asyncio.to_thread(self._generate, sample, sampling_params, epoch)

    async def abort(self) -> None:
        self._abort_epoch += 1

    def update_weights_from_disk(self, path: str, weight_version: str) -> None:
        from transformers import AutoModelForCausalLM

        with self._lock:
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
            self.weight_version = weight_version

    def release_memory(self) -> None:
        self._record("release_memory")  # nothing to free on CPU

    def resume_memory(self, tags: list[str] | None = None) -> None:
        self._record(f"resume_memory {' '.join(tags or ['all'])}")

    def _record(self, call: str) -> None:
        if self.output_dir is not None:
            record_call(self.output_dir, call)

    def shutdown(self) -> None:
        pass

    def _generate(self, sample: Sample, params: dict[str, Any], epoch: int) -> Sample:
        with self._lock:
            budget = params["max_new_tokens"] - sample.response_length
            if budget <= 0:
                sample.set_finish_reason("length")
                return sample
            stop_ids = set(params.get("stop_token_ids") or [])
            if self.tokenizer.eos_token_id is not None:
                stop_ids.add(self.tokenizer.eos_token_id)
            tokens, log_probs, finish = [], [], "length"
            past, inputs = None, torch.tensor([sample.tokens])
            with torch.no_grad():
                for _ in range(budget):
                    if self._abort_epoch != epoch:
                        finish = "abort"
                        break
                    out = self.model(input_ids=inputs, past_key_values=past, use_cache=True)
                    past = out.past_key_values
                    token, log_prob = self._sample(out.logits[0, -1], params)
                    tokens.append(token)
                    log_probs.append(log_prob)
                    inputs = torch.tensor([[token]])
                    if self.token_delay:
                        threading.Event().wait(self.token_delay)
                    if token in stop_ids:
                        finish = "stop"
                        break
            sample.append_response_tokens(tokens=tokens, log_probs=log_probs, text=self.tokenizer.decode(tokens))
            sample.weight_versions.append(self.weight_version)
            sample.set_finish_reason(finish)
            return sample

    def _sample(self, logits: torch.Tensor, params: dict[str, Any]) -> tuple[int, float]:
        temperature = params.get("temperature", 1.0)
        if temperature == 0:
            log_probs = torch.log_softmax(logits, dim=-1)
            token = int(torch.argmax(logits))
            return token, float(log_probs[token])
        log_probs = torch.log_softmax(logits / temperature, dim=-1)
        probs = log_probs.exp()
        top_k = params.get("top_k", -1)
        if top_k and top_k > 0:
            cutoff = torch.topk(probs, min(top_k, probs.numel())).values[-1]
            probs = torch.where(probs >= cutoff, probs, torch.zeros_like(probs))
        top_p = params.get("top_p", 1.0)
        if top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            outside = torch.cumsum(sorted_probs, 0) - sorted_probs > top_p
            probs = probs.clone()
            probs[order[outside]] = 0
        token = int(torch.multinomial(probs / probs.sum(), 1, generator=self.generator))
        return token, float(log_probs[token])
