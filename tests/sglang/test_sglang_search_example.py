"""examples/search-r1: its BM25 retriever, its reward, and its generate function (slime's signature, posting to the
router itself) against the shared real SGLang deployment.

A tiny random model never writes ``</search>`` by itself, so the generate tests force each turn with SGLang's own
``regex`` sampling parameter: every turn is a real generation (the engine's ids and log-probs), limited to the search
or the answer a test needs. ``post`` is wrapped to record what each turn sent and what the engine returned.
"""

import asyncio
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from slime.config.arguments import parse_args
from slime.rollout import event_loop
from slime.rollout.generate import prompt_tokenizer
from slime.rollout.sampling import rollout_sampling_params
from slime.utils import http_utils
from slime.utils.types import Sample

EXAMPLE = Path(__file__).parents[2] / "examples" / "search-r1"
sys.path.insert(0, str(EXAMPLE))  # the example's modules import each other as slime's search-r1 does: by file name
import generate_with_search  # noqa: E402
from retriever import Retriever, information_text  # noqa: E402

DOCUMENTS = [
    {"id": "0", "title": "Varnia", "contents": "The capital of Varnia is Oslek."},
    {"id": "1", "title": "Varnia", "contents": "Varnia borders Quorra."},
    {"id": "2", "title": "Quorra", "contents": "The capital of Quorra is Tamsel."},
    {"id": "3", "title": "Oslek", "contents": "Oslek is known for its glass."},
]
TOP_K = 2
PROMPT = "<|im_start|>user\nWhat is the capital of Varnia?<|im_end|>\n<|im_start|>assistant\n"
QUERY = "capital of Varnia"
SEARCH = f"<search> {QUERY} </search>"
ANSWER = "<answer> Oslek </answer>"


def test_bm25_ranks_the_fact_first_and_leaves_out_documents_without_a_shared_word():
    retriever = Retriever(DOCUMENTS)
    assert [doc["id"] for doc in retriever.search(QUERY, 3)][0] == "0"
    assert retriever.search("Tamsel", 3) == [DOCUMENTS[2]]
    assert retriever.search("zebra crossing", 3) == []
    assert information_text([]) == "\n\n<information>No results.</information>\n\n"


@pytest.mark.parametrize(
    ("response", "label", "reward"),
    [
        (f"{SEARCH}\n<information>...</information>\n{ANSWER}", "Oslek", 1.0),
        ("<answer> The oslek. </answer>", "Oslek", 1.0),  # case, article and punctuation are normalised away
        ("<answer> Tamsel </answer> <answer> Oslek </answer>", "Oslek", 1.0),  # the last answer counts
        ("<answer> Oslek </answer> <answer> Tamsel </answer>", "Oslek", 0.0),
        ("Oslek", "Oslek", 0.0),  # no <answer>
        ("<answer> Oslek city </answer>", "Oslek", 0.0),  # exact match, not containment
        ("<answer> Oslek </answer>", ["Tamsel", "Oslek"], 1.0),  # any of several accepted answers
    ],
)
def test_reward_is_the_exact_match_of_the_last_answer(response, label, reward):
    sample = Sample(response=response, label=label)
    assert asyncio.run(generate_with_search.reward_func(None, sample)) == reward


@pytest.fixture(scope="module")
def search_config(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("search-r1")
    (folder / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in DOCUMENTS))
    config = folder / "search.yaml"  # what prepare.py writes, read through slime's --custom-config-path
    config.write_text(yaml.safe_dump({"search_corpus": str(folder / "corpus.jsonl"), "search_topk": TOP_K}))
    return str(config)


def make_args(engine, search_config: str, *, max_turns: int):
    args = parse_args(
        [
            "--hf-checkpoint", engine.args.hf_checkpoint, "--output-dir", engine.args.output_dir,
            "--rollout-max-response-len", "256", "--max-turns", str(max_turns),
            "--custom-config-path", search_config,
        ]
    )  # fmt: skip
    args.sglang_router_ip, args.sglang_router_port = engine.args.sglang_router_ip, engine.args.sglang_router_port
    return args


def generate(args, monkeypatch, regex: str, max_new_tokens: int | None = None) -> tuple[Sample, list, list]:
    """Run the example's generate function on PROMPT with every turn forced to ``regex``; returns the sample, the
    requests posted and the ids the engine generated for each."""
    requests, produced = [], []

    async def recording_post(url, payload, **kwargs):
        requests.append(json.loads(json.dumps(payload)))  # a copy: the function reuses its sampling-params dict
        output = await http_utils.post(url, payload, **kwargs)
        produced.append([pair[1] for pair in output["meta_info"]["output_token_logprobs"]])
        return output

    monkeypatch.setattr(generate_with_search, "post", recording_post)
    params = rollout_sampling_params(args) | {"regex": regex}
    if max_new_tokens is not None:
        params["max_new_tokens"] = max_new_tokens
    sample = event_loop.run(generate_with_search.generate(args, Sample(index=0, prompt=PROMPT), params))
    return sample, requests, produced


def information_ids(tokenizer) -> list[int]:
    text = information_text(Retriever(DOCUMENTS).search(QUERY, TOP_K))
    assert "The capital of Varnia is Oslek." in text
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_search_results_are_masked_and_the_response_is_the_engines_ids_then_theirs(engine, search_config, monkeypatch):
    args = make_args(engine, search_config, max_turns=2)
    tokenizer = prompt_tokenizer(args.hf_checkpoint)
    prompt_ids = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    info = information_ids(tokenizer)

    sample, requests, (first, second) = generate(args, monkeypatch, re.escape(SEARCH))

    assert tokenizer.decode(first).startswith(SEARCH) and tokenizer.decode(second).startswith(SEARCH)
    assert sample.tokens == prompt_ids + first + info + second
    # Token in: each turn was sent exactly the ids before it, with the budget that was left.
    assert [r["input_ids"] for r in requests] == [prompt_ids, prompt_ids + first + info]
    assert [r["sampling_params"]["max_new_tokens"] for r in requests] == [256, 256 - len(first) - len(info)]
    assert all(set(generate_with_search.STOP_TAGS) <= set(r["sampling_params"]["stop"]) for r in requests)
    assert sample.loss_mask == [1] * len(first) + [0] * len(info) + [1] * len(second)
    info_log_probs = sample.rollout_log_probs[len(first) : len(first) + len(info)]
    assert info_log_probs == [0.0] * len(info)  # the results have no log-probs
    engine_log_probs = sample.rollout_log_probs[: len(first)]
    assert all(lp <= 0.0 for lp in engine_log_probs) and any(lp < 0.0 for lp in engine_log_probs)  # the engine's
    assert sample.response.startswith(SEARCH) and "<information>Doc 1(Title: Varnia)" in sample.response
    # The turn limit: the second turn searched again, with no turn left to read the results.
    assert sample.metadata["round_number"] == 2 and sample.status is Sample.Status.TRUNCATED


def test_an_answer_ends_the_sample_and_earns_the_reward(engine, search_config, monkeypatch):
    args = make_args(engine, search_config, max_turns=2)
    sample, requests, (turn,) = generate(args, monkeypatch, re.escape(ANSWER))
    assert sample.status is Sample.Status.COMPLETED and sample.metadata["round_number"] == 1
    assert sample.loss_mask == [1] * len(turn) and sample.response.startswith(ANSWER)
    sample.label = "Oslek"
    assert asyncio.run(generate_with_search.reward_func(args, sample)) == 1.0


def test_results_that_overrun_the_budget_are_cut_and_the_sample_truncated(engine, search_config, monkeypatch):
    args = make_args(engine, search_config, max_turns=4)
    tokenizer = prompt_tokenizer(args.hf_checkpoint)
    info = information_ids(tokenizer)
    budget = len(SEARCH) + 2  # room for the search (at most a token per character, and a stop token), not its results
    assert budget < len(info) + len(tokenizer(SEARCH, add_special_tokens=False)["input_ids"])

    sample, requests, (turn,) = generate(args, monkeypatch, re.escape(SEARCH), max_new_tokens=budget)

    kept = budget - len(turn)
    assert 0 < kept < len(info)
    assert sample.tokens[sample.prompt_length :] == turn + info[:kept]
    assert sample.loss_mask == [1] * len(turn) + [0] * kept
    assert sample.response_length == budget and sample.status is Sample.Status.TRUNCATED
    assert len(requests) == 1  # no turn after the cut results
