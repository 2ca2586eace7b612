"""The search-r1 example's custom functions, written as slime's users write them (slime's signatures and imports):

    --custom-generate-function-path generate_with_search.generate
    --custom-rm-path generate_with_search.reward_func
    --custom-config-path <out>/search.yaml    # search_corpus (a jsonl path) and search_topk, set on args

``generate`` posts the sample's ids to the router (``args.sglang_router_ip:port``) and lets the engine stop at
``</search>`` or ``</answer>``. A turn that ends in a search gets the BM25 results of its query appended as an
``<information>`` block (loss mask 0, no log-probs) and another turn; any other turn is the last. Token in, token
out: every turn continues the ids so far, and only the information text is tokenized, once, so the response is
exactly the engine's ids plus the information's. Limits: ``--max-turns`` model turns and the response budget
(``--rollout-max-response-len``, information included); a sample that would need more is TRUNCATED. Unlike slime's
search-r1, a turn with neither tag ends the sample (slime appends a "my previous action is invalid" note and lets the
model try again).
"""

import re
import string

from retriever import information_text, load_retriever

from slime.rollout.sglang_rollout import GenerateState
from slime.utils.http_utils import post
from slime.utils.types import Sample

STOP_TAGS = ["</search>", "</answer>"]


def search_query(turn: str) -> str | None:
    """The query of a turn that ends in a search: what stands between its last ``<search>`` and ``</search>``."""
    before, found, _ = turn.partition("</search>")
    return before.rpartition("<search>")[2].strip() if found else None


async def generate(args, sample: Sample, sampling_params: dict) -> Sample:
    corpus = getattr(args, "search_corpus", None)
    if corpus is None:
        raise ValueError("search_corpus is not set: pass --custom-config-path <out>/search.yaml (prepare.py writes it)")
    retriever = load_retriever(corpus)
    tokenizer = GenerateState(args).tokenizer
    url = f"http://{args.sglang_router_ip}:{args.sglang_router_port}/generate"
    # From the prompt each time: an aborted sample that comes back (--partial-rollout) starts over, as in slime.
    sample.tokens = tokenizer(sample.prompt, add_special_tokens=False)["input_ids"]
    sample.response, sample.response_length, sample.loss_mask, sample.rollout_log_probs = "", 0, None, None
    sample.metadata["round_number"] = 0  # model turns, for --log-multi-turn's multi_turn/* metrics
    budget = sampling_params["max_new_tokens"]
    params = {**sampling_params, "stop": list(dict.fromkeys([*(sampling_params.get("stop") or []), *STOP_TAGS]))}
    while True:
        params["max_new_tokens"] = budget - sample.response_length
        payload = {"input_ids": sample.tokens, "sampling_params": params, "return_logprob": True}
        output = await post(url, payload)
        meta_info = output["meta_info"]
        if meta_info["finish_reason"]["type"] == "abort":
            sample.status = Sample.Status.ABORTED
            return sample
        pairs = meta_info["output_token_logprobs"]  # [log-prob, token id, ...] per generated token
        sample.append_response_tokens(
            args,
            tokens=[pair[1] for pair in pairs],
            log_probs=[pair[0] for pair in pairs],
            trainable=True,
            meta_info=meta_info,  # sets the status from the finish reason
            text=output["text"],
        )
        sample.metadata["round_number"] += 1
        query = search_query(output["text"])
        if sample.status is Sample.Status.TRUNCATED or query is None:
            return sample
        if sample.metadata["round_number"] >= args.max_turns:
            sample.status = Sample.Status.TRUNCATED  # it searched in its last allowed turn
            return sample
        information = information_text(retriever.search(query, getattr(args, "search_topk", 3)))
        ids = tokenizer(information, add_special_tokens=False)["input_ids"]
        room = budget - sample.response_length
        if len(ids) >= room:  # no room left to answer after it
            ids = ids[:room]
            information = tokenizer.decode(ids)
            sample.status = Sample.Status.TRUNCATED
        sample.append_response_tokens(args, tokens=ids, trainable=False, text=information)
        if sample.status is Sample.Status.TRUNCATED:
            return sample


def normalize_answer(text: str) -> str:
    """Lower case, without punctuation, articles and extra spaces (SQuAD's normalisation, as Search-R1 uses)."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def final_answer(response: str) -> str | None:
    answers = re.findall(r"<answer>(.*?)</answer>", response, re.DOTALL)
    return answers[-1] if answers else None


async def reward_func(args, sample: Sample, **kwargs) -> float:
    """1.0 when the response's last ``<answer>`` matches the label (a string, or a list of accepted answers) after
    normalisation, else 0.0."""
    answer = final_answer(sample.response)
    labels = [sample.label] if isinstance(sample.label, str) else list(sample.label)
    return float(answer is not None and normalize_answer(answer) in {normalize_answer(label) for label in labels})
