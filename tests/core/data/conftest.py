"""Fixtures for the prompt-data tests: local tokenizers, data files shaped like the public sets, and flags.

Data files are written under ``tmp_path/data`` with the test's working directory at ``tmp_path``, so error messages
name short relative paths (``data/train.jsonl``) exactly as a user would see them.
"""

import argparse
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slime_testkit.tokenizer import build_tokenizer

# Row 0 of zhuzilin/dapo-math-17k (the shape slime's docs show): a message-list prompt and a string label.
DAPO_PROMPT = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
    "In triangle $ABC$, $\\sin \\angle A = \\frac{4}{5}$ and $\\angle A < 90^\\circ$. Let $D$ be a point outside "
    "triangle $ABC$ such that $\\angle BAD = \\angle DAC$ and $\\angle BDC = 90^\\circ$. Suppose that $AD = 1$ and "
    "that $\\frac{BD}{CD} = \\frac{3}{2}$. If $AB + AC$ can be expressed in the form $\\frac{a\\sqrt{b}}{c}$ where "
    "$a, b, c$ are pairwise relatively prime integers, find $a + b + c$.\n\n"
    'Remember to put your answer on its own line after "Answer:".'
)
DAPO_ROWS = [
    {"prompt": [{"content": DAPO_PROMPT, "role": "user"}], "label": "34"},
    {"prompt": [{"content": "Compute $1 + 2 + \\cdots + 10$.", "role": "user"}], "label": "55"},
    {"prompt": [{"content": "What is $7 \\times 8$?", "role": "user"}], "label": "56"},
]
# aime-2024 style: the same keys, the prompt a plain string.
AIME_ROWS = [
    {
        "prompt": "Every morning Aya goes for a $9$-kilometer-long walk and stops at a coffee shop afterwards. "
        "Find the number of minutes the walk takes her, including the $t$ minutes spent in the coffee shop.",
        "label": "204",
    },
    {"prompt": "Find the largest possible real part of $(75+117i)z+\\frac{96+144i}{z}$ where $|z|=4$.", "label": "540"},
]
# zhuzilin/gsm8k style parquet: a `messages` column of chat messages and a string `label` column.
GSM8K_ROWS = [
    {
        "messages": [
            {
                "role": "user",
                "content": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
                "in May. How many clips did Natalia sell altogether in April and May?",
            }
        ],
        "label": "72",
    },
    {
        "messages": [{"role": "user", "content": "Weng earns $12 an hour for babysitting. How much for 50 minutes?"}],
        "label": "10",
    },
]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> str:
    return str(build_tokenizer(tmp_path_factory.mktemp("tokenizer")))


@pytest.fixture(scope="session")
def plain_tokenizer_dir(tmp_path_factory) -> str:
    """A tokenizer without a chat template, as a base model ships."""
    return str(build_tokenizer(tmp_path_factory.mktemp("plain-tokenizer"), chat_template=None))


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


@pytest.fixture
def write_jsonl(data_dir):
    """``write_jsonl(name, lines)``: dicts become JSON lines; str and bytes lines are written as they are."""

    def write(name: str, lines: list) -> str:
        chunks = []
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line)
            chunks.append(line if isinstance(line, bytes) else line.encode("utf-8"))
        (data_dir / name).write_bytes(b"\n".join(chunks) + b"\n")
        return f"data/{name}"

    return write


@pytest.fixture
def write_parquet(data_dir):
    def write(name: str, rows: list[dict]) -> str:
        pq.write_table(pa.Table.from_pylist(rows), data_dir / name)
        return f"data/{name}"

    return write


@pytest.fixture
def dapo_jsonl(write_jsonl) -> str:
    return write_jsonl("dapo-math-17k.jsonl", DAPO_ROWS)


@pytest.fixture
def aime_jsonl(write_jsonl) -> str:
    return write_jsonl("aime-2024.jsonl", AIME_ROWS)


@pytest.fixture
def gsm8k_parquet(write_parquet) -> str:
    return write_parquet("gsm8k-train.parquet", GSM8K_ROWS)


@pytest.fixture
def make_args():
    """``make_args(**flags)``: a Namespace with every flag the default data source reads, at slime's defaults."""

    def make(**overrides) -> argparse.Namespace:
        flags = {
            "prompt_data": None,
            "input_key": "input",
            "label_key": None,
            "metadata_key": "metadata",
            "tool_key": "tools",
            "apply_chat_template": False,
            "apply_chat_template_kwargs": {},
            "rollout_max_prompt_len": None,
            "rollout_shuffle": False,
            "rollout_seed": 42,
            "n_samples_per_prompt": 1,
            "hf_checkpoint": None,
            "buffer_filter_path": None,
        }
        unknown = set(overrides) - set(flags)
        assert not unknown, f"not a data-source flag: {unknown}"
        flags.update(overrides)
        return argparse.Namespace(**flags)

    return make


@pytest.fixture
def dapo_rows() -> list[dict]:
    return json.loads(json.dumps(DAPO_ROWS))  # a copy, so a test cannot change another's data


@pytest.fixture
def aime_rows() -> list[dict]:
    return json.loads(json.dumps(AIME_ROWS))


@pytest.fixture
def gsm8k_rows() -> list[dict]:
    return json.loads(json.dumps(GSM8K_ROWS))
