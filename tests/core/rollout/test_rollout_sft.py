"""The ``sft`` rollout function: prompt + answer + eos as one sample, loss on the answer only, nothing generated."""

import json

from slime.config.arguments import parse_args
from slime.data.data_source import RolloutDataSource
from slime.data.dataset import load_tokenizer
from slime.plugins import resolve
from slime.rollout.sft import sft_rollout
from slime.rollout.train_batch import samples_to_train_batch
from slime.types import Status
from slime_testkit.hf_engine import HFEngine


class NoGenerationEngine:
    """An SFT rollout must never ask the engine for anything."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the sft rollout called engine.{name}")


def make_args(model, data: str, *extra: str):
    return parse_args(
        [
            "--hf-checkpoint", str(model), "--prompt-data", data, "--input-key", "prompt", "--label-key", "label",
            "--rollout-function-path", "sft", "--loss-type", "sft_loss", "--rollout-batch-size", "2", *extra,
        ]
    )  # fmt: skip


def test_sft_is_registered():
    assert resolve("rollout_functions", "sft") is sft_rollout


def test_samples_are_prompt_then_answer_then_eos(tiny_model, arithmetic_data):
    args = make_args(tiny_model, arithmetic_data["train"])
    tokenizer = load_tokenizer(str(tiny_model), "test")
    output = sft_rollout(args, 3, RolloutDataSource(args), NoGenerationEngine())

    assert [len(group) for group in output.groups] == [1, 1]
    for sample in output.samples:
        prompt_ids = tokenizer.encode(sample.prompt, add_special_tokens=False)
        answer_ids = tokenizer.encode(sample.label, add_special_tokens=False)  # no metadata: the label is the answer
        assert sample.tokens == prompt_ids + answer_ids + [tokenizer.eos_token_id]
        assert sample.response == sample.label
        assert sample.response_length == len(answer_ids) + 1
        assert sample.loss_mask == [1] * sample.response_length  # the prompt is outside the response: no loss
        assert sample.status is Status.COMPLETED and sample.reward == 0.0 and sample.rollout_id == 3
        assert sample.rollout_log_probs is None

    batch = samples_to_train_batch(args, output.samples)  # what the trainer receives
    assert batch.response_lengths == [s.response_length for s in output.samples]
    assert batch.rollout_log_probs is None and batch.rewards == [0.0, 0.0]


def test_metadata_response_and_chat_template(tiny_model, tmp_path):
    data = tmp_path / "train.jsonl"
    row = {
        "prompt": [{"role": "user", "content": "What is 3 + 4?"}],
        "label": "7",
        "metadata": {"response": "\\boxed{7}"},
    }
    data.write_text(json.dumps(row) + "\n")
    args = make_args(tiny_model, str(data), "--apply-chat-template", "--rollout-batch-size", "1")
    tokenizer = load_tokenizer(str(tiny_model), "test")
    (sample,) = sft_rollout(args, 0, RolloutDataSource(args), NoGenerationEngine()).samples

    prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    answer_ids = tokenizer.encode("\\boxed{7}", add_special_tokens=False)
    assert sample.tokens == tokenizer.encode(prompt, add_special_tokens=False) + answer_ids + [tokenizer.eos_token_id]
    assert sample.response == "\\boxed{7}"


async def label_in_response(args, sample) -> float:
    return float(sample.label in sample.response)


def test_evaluation_generates(tiny_model, arithmetic_data):
    args = make_args(
        tiny_model, arithmetic_data["train"],
        "--eval-prompt-data", "heldout", arithmetic_data["eval_a"], "--rollout-max-response-len", "4",
        "--custom-rm-path", f"{__name__}.label_in_response",
    )  # fmt: skip
    engine = HFEngine.from_model(tiny_model, seed=1)
    result = sft_rollout(args, 0, None, engine, evaluation=True)
    assert set(result) == {"heldout"}
    heldout = result["heldout"]
    assert heldout.name == "heldout" and heldout.n_samples_per_prompt == 1  # --n-samples-per-eval-prompt's default
    # eval_a's three rows, "i+(i+1)=" labelled 2i+1, one generated sample each (not SFT's prompt + answer + eos).
    assert [(s.prompt, s.label) for s in heldout.samples] == [("0+1=", "1"), ("1+2=", "3"), ("2+3=", "5")]
    assert engine.requests == 3
    tokenizer = load_tokenizer(str(tiny_model), "test")
    for sample in heldout.samples:
        prompt_ids = tokenizer.encode(sample.prompt, add_special_tokens=False)
        assert sample.tokens[: len(prompt_ids)] == prompt_ids
        generated = sample.tokens[len(prompt_ids) :]
        assert 1 <= len(generated) == sample.response_length <= 4
        assert sample.response == tokenizer.decode(generated)
        assert len(sample.rollout_log_probs) == sample.response_length
        assert all(lp <= 0 for lp in sample.rollout_log_probs)
        assert sample.status in (Status.COMPLETED, Status.TRUNCATED)
        assert sample.reward == float(sample.label in sample.response)  # scored by --custom-rm-path
