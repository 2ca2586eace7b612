"""The search-r1 example's search engine: BM25 (the `bm25s` library) over a jsonl corpus, in the rollout's process.

slime's search-r1 asks a retrieval server over HTTP (a dense E5 index of Wikipedia, ~130 GB); a corpus of a few
hundred made-up facts needs none of that, so the index is built in memory the first time a process searches.
A corpus line is ``{"id": ..., "title": ..., "contents": ...}``.
"""

import json
from functools import cache
from pathlib import Path

import bm25s


class Retriever:
    def __init__(self, documents: list[dict]) -> None:
        self.documents = documents
        self.index = bm25s.BM25()
        texts = [f"{doc['title']}\n{doc['contents']}" for doc in documents]
        self.index.index(_tokenize(texts), show_progress=False)

    def search(self, query: str, top_k: int) -> list[dict]:
        """The best ``top_k`` documents for ``query``, best first, leaving out those that share no word with it."""
        words = _tokenize([query])
        if not words[0] or not self.documents:
            return []
        ids, scores = self.index.retrieve(words, k=min(top_k, len(self.documents)), show_progress=False)
        return [self.documents[i] for i, score in zip(ids[0], scores[0], strict=True) if score > 0]


def _tokenize(texts: list[str]) -> list[list[str]]:
    # Words as strings, not ids: a query's words are looked up in the corpus's vocabulary by the index.
    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


@cache
def load_retriever(corpus_path: str) -> Retriever:
    """One index per corpus and process (the rollout manager builds it at its first search)."""
    lines = Path(corpus_path).read_text(encoding="utf-8").splitlines()
    return Retriever([json.loads(line) for line in lines if line.strip()])


def information_text(documents: list[dict]) -> str:
    """Search results as the model reads them, in Search-R1's layout: one ``Doc i(Title: ...)`` line per result."""
    lines = [f"Doc {i}(Title: {doc['title']}) {doc['contents']}" for i, doc in enumerate(documents, start=1)]
    return "\n\n<information>" + ("\n".join(lines) or "No results.") + "</information>\n\n"
