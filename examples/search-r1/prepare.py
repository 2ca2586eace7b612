"""Build the search-r1 example's inputs: a made-up world's facts as a search corpus, questions about them, a tiny model.

    uv run python examples/search-r1/prepare.py --out outputs/search-r1

writes ``<out>/corpus.jsonl`` (one fact per document, ``{"id", "title", "contents"}``: the facts the questions ask
about and as many distractors), ``<out>/data/{train,eval}.jsonl`` (``{"prompt": [{"role": "user", "content": ...}],
"label": "Oslek"}``; every answer is in the corpus, and no model can know it without searching), ``<out>/search.yaml``
(the ``--custom-config-path`` that tells the generate function where the corpus is) and ``<out>/model`` (HF
directory: random fp32 weights, a tokenizer trained on the task's text). Same arguments, same files.
"""

import argparse
import json
import random
from pathlib import Path

import yaml
from retriever import information_text

from slime.files import atomic_write
from slime_testkit.tiny_model import build_tiny_model

NUM_COUNTRIES = 40
EVAL_FRACTION = 0.2
SYLLABLES = ["var", "os", "lek", "tam", "sel", "quo", "ra", "nia", "bel", "dor", "mir", "kas", "tel", "un", "zo", "pha"]
PRODUCTS = ["glass", "silk", "salt", "copper", "tea", "paper", "wool", "honey"]
INSTRUCTION = (
    "Answer the question. To look something up, write a query between <search> and </search>; the results come back "
    "between <information> and </information>. Search as often as you need, then write the final answer between "
    "<answer> and </answer>, for example <answer> Paris </answer>. Question: "
)


def made_up_names(rng: random.Random, count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.sample(SYLLABLES, rng.randint(2, 3))).capitalize())
    return sorted(names)


def world(rng: random.Random) -> tuple[list[dict], list[dict]]:
    """Documents and question rows. Each country has a capital, a currency and a highest mountain, each asked about;
    the distractors (what a city is known for, a border) share the questions' names but answer none of them."""
    names = made_up_names(rng, 4 * NUM_COUNTRIES)
    rng.shuffle(names)
    countries, cities, currencies, mountains = (names[i::4] for i in range(4))
    documents, questions = [], []

    def fact(title: str, contents: str) -> None:
        documents.append({"id": str(len(documents)), "title": title, "contents": contents})

    for i, country in enumerate(countries):
        city, currency, mountain = cities[i], currencies[i], f"Mount {mountains[i]}"
        fact(country, f"The capital of {country} is {city}.")
        fact(country, f"The currency of {country} is the {currency}.")
        fact(country, f"The highest mountain of {country} is {mountain}.")
        fact(city, f"{city} is known for its {rng.choice(PRODUCTS)}.")
        fact(country, f"{country} borders {countries[(i + 1) % len(countries)]}.")
        questions += [
            (f"What is the capital of {country}?", city),
            (f"What is the currency of {country}?", currency),
            (f"What is the highest mountain of {country}?", mountain),
        ]
    rows = [{"prompt": [{"role": "user", "content": INSTRUCTION + q}], "label": answer} for q, answer in questions]
    return documents, rows


def tokenizer_corpus(documents: list[dict], rows: list[dict]) -> list[str]:
    """The prompts, the search results and the turns a trained model would write, so that the tokenizer's merges
    cover the task's text."""
    texts = [information_text([doc]) for doc in documents]
    for row in rows:
        question = row["prompt"][0]["content"]
        texts += [
            question,
            f"<search> {question.removeprefix(INSTRUCTION)} </search>",
            f"<answer> {row['label']} </answer>",
        ]
    return texts


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/search-r1"))
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=3, help="documents per search")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    documents, rows = world(rng)
    rng.shuffle(rows)
    num_eval = round(EVAL_FRACTION * len(rows))
    corpus = args.out.resolve() / "corpus.jsonl"  # absolute: the rollout manager may run in another directory
    atomic_write(corpus, jsonl(documents))
    atomic_write(args.out / "data" / "train.jsonl", jsonl(rows[num_eval:]))
    atomic_write(args.out / "data" / "eval.jsonl", jsonl(rows[:num_eval]))
    atomic_write(args.out / "search.yaml", yaml.safe_dump({"search_corpus": str(corpus), "search_topk": args.top_k}))
    model = build_tiny_model(
        args.out / "model",
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        seed=args.seed,
        corpus=tokenizer_corpus(documents, rows),
    )
    print(f"model: {model}; corpus: {len(documents)} documents; data: {len(rows) - num_eval} train, {num_eval} eval")


if __name__ == "__main__":
    main()
