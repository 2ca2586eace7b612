"""`loopback_hub`: a Hugging Face hub on 127.0.0.1 serving in-memory repos through the part of the file API that
downloads use.

Tests cannot reach the real hub. Point `HF_ENDPOINT` at the endpoint the fixture returns (with `HF_HUB_DISABLE_XET=1`,
so files come over plain HTTP) and `huggingface_hub.snapshot_download` talks to this server instead:

- `GET /api/{models,datasets}/{repo}/revision/{rev}`: repo info with the commit `sha`;
- `GET /api/{models,datasets}/{repo}/tree/{rev}?recursive=true`: the file listing;
- `HEAD`/`GET /{repo}/resolve/{rev}/{file}` (datasets: `/datasets/{repo}/resolve/...`): the file, with the
  `X-Repo-Commit` and `ETag` headers the client needs to place it in its cache.

Unknown repos, revisions and files answer 404 with the hub's `X-Error-Code`, which huggingface_hub turns into
`RepositoryNotFoundError`, `RevisionNotFoundError` and `RemoteEntryNotFoundError`.
"""

import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest

_REPO = r"(?P<repo>[^/]+/[^/]+)"
_API = re.compile(rf"^/api/(?P<kind>models|datasets)/{_REPO}/(?P<op>revision|tree)/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_RESOLVE = re.compile(rf"^/(?:(?P<kind>datasets)/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


@pytest.fixture
def loopback_hub() -> Iterator[Callable[[dict[tuple[str, str], tuple[str, dict[str, bytes]]]], str]]:
    """Start hubs serving {(repo type, repo id): (commit, {path: content})}; each call returns its endpoint URL."""
    hubs = []

    def start(repos: dict[tuple[str, str], tuple[str, dict[str, bytes]]]) -> str:
        hub = LoopbackHub({key: Repo(commit, files) for key, (commit, files) in repos.items()})
        hubs.append(hub)
        return hub.endpoint

    yield start
    for hub in hubs:
        hub.stop()


@dataclass
class Repo:
    commit: str
    files: dict[str, bytes]


class LoopbackHub:
    """Serve `repos`, keyed by (repo type, repo id), from a background thread until `stop`."""

    def __init__(self, repos: dict[tuple[str, str], Repo]) -> None:
        self.repos = repos
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        host, port = self._server.server_address[:2]
        self.endpoint = f"http://{host}:{port}"
        # A short poll interval keeps `stop` (which waits for the serving loop to notice) from adding 0.5 s per test.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def lookup(self, kind: str | None, repo_id: str, revision: str) -> tuple[Repo | None, str]:
        """The repo at `revision`, or None and the hub's error code for what is unknown."""
        repo = self.repos.get(("dataset" if kind == "datasets" else "model", unquote(repo_id)))
        if repo is None:
            return None, "RepoNotFound"
        if unquote(revision) not in ("main", repo.commit):
            return None, "RevisionNotFound"
        return repo, ""


def _handler_for(hub: LoopbackHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(with_body=True)

        def do_HEAD(self) -> None:
            self._answer(with_body=False)

        def _answer(self, with_body: bool) -> None:
            path = urlsplit(self.path).path
            api, resolve = _API.match(path), _RESOLVE.match(path)
            match = api or resolve
            if match is None:
                self._send(404, b"", {}, with_body)
                return
            repo, error_code = hub.lookup(match["kind"], match["repo"], match["rev"])
            if repo is None:
                self._send(404, b"", {"X-Error-Code": error_code}, with_body)
            elif api:
                body = _repo_info(match["repo"], repo) if match["op"] == "revision" else _tree(repo)
                self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"}, with_body)
            elif (content := repo.files.get(unquote(match["path"]))) is None:
                self._send(404, b"", {"X-Error-Code": "EntryNotFound"}, with_body)
            else:
                headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{_git_blob_id(content)}"'}
                self._send(200, content, headers, with_body)

        def _send(self, status: int, body: bytes, headers: dict[str, str], with_body: bool) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep pytest's captured output free of access logs

    return Handler


def _repo_info(repo_id: str, repo: Repo) -> dict:
    return {"id": unquote(repo_id), "sha": repo.commit, "siblings": [{"rfilename": name} for name in repo.files]}


def _tree(repo: Repo) -> list[dict]:
    return [
        {"type": "file", "path": name, "size": len(content), "oid": _git_blob_id(content)}
        for name, content in repo.files.items()
    ]


def _git_blob_id(content: bytes) -> str:
    # The hub's ETag for a file stored in git (not LFS) is its git blob id.
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
