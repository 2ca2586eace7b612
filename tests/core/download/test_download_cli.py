"""`slime download` against a hand-built hub cache (offline) and a loopback hub (network), with no real hub.

huggingface_hub reads HF_HUB_OFFLINE, HF_ENDPOINT and the cache location when it is imported, so every download runs
in a fresh interpreter with the environment the test sets up.
"""

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"
FILES = {
    "config.json": b'{"model_type": "qwen2"}\n',
    "model.safetensors": bytes(range(256)) * 40,
    "data/train.jsonl": b'{"prompt": "1+1?", "label": "2"}\n',
}
_CLI = "import sys; from slime.cli import main; sys.exit(main(['download', *sys.argv[1:]]))"


def build_cache(cache: Path, repo_type: str, repo_id: str, files: dict[str, bytes]) -> None:
    """Lay out `files` the way the hub cache stores them: a ref, content-addressed blobs, snapshot symlinks."""
    storage = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(COMMIT)
    (storage / "blobs").mkdir()
    for name, content in files.items():
        blob = storage / "blobs" / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        link = storage / "snapshots" / COMMIT / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


def slime_download(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    # Drop the test process's HF_* settings (tests/conftest.py sets HF_HUB_OFFLINE=1): each test states its own.
    # Without xet, files come over plain HTTP, which is all the loopback hub speaks.
    environ = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    environ |= {"HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_CACHE": str(tmp_path / "cache")}
    environ |= {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1", **env}
    return subprocess.run(
        [sys.executable, "-c", _CLI, *args], env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def assert_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        assert (folder / name).read_bytes() == content, name


def assert_clear_error(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"slime download: error: {message}"


# Offline: a hand-built cache and HF_HUB_OFFLINE=1.


@pytest.mark.parametrize("repo_type", ["model", "dataset"])
def test_offline_copies_cached_repo_into_local_dir(tmp_path: Path, repo_type: str) -> None:
    build_cache(tmp_path / "cache", repo_type, "org/name", FILES)
    out = tmp_path / "out"
    result = slime_download(tmp_path, "org/name", "--repo-type", repo_type, "--local-dir", str(out), HF_HUB_OFFLINE="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out.resolve())
    assert_files(out, FILES)
    assert not (out / "config.json").is_symlink()


def test_offline_without_local_dir_prints_cached_snapshot(tmp_path: Path) -> None:
    build_cache(tmp_path / "cache", "model", "org/name", FILES)
    result = slime_download(tmp_path, "org/name", HF_HUB_OFFLINE="1")
    assert result.returncode == 0, result.stderr
    snapshot = Path(result.stdout.strip())
    assert snapshot == tmp_path / "cache" / "models--org--name" / "snapshots" / COMMIT
    assert_files(snapshot, FILES)


def test_offline_commit_revision_and_patterns(tmp_path: Path) -> None:
    build_cache(tmp_path / "cache", "model", "org/name", FILES)
    out = tmp_path / "out"
    args = ["--revision", COMMIT, "--include", "*.json", "data/*", "--exclude", "data/*", "--local-dir", str(out)]
    result = slime_download(tmp_path, "org/name", *args, HF_HUB_OFFLINE="1")
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["config.json"]


def test_offline_missing_repo_is_a_clear_error(tmp_path: Path) -> None:
    build_cache(tmp_path / "cache", "model", "org/name", FILES)
    # The repo is cached as a model: asking for a dataset of that name must not find it.
    result = slime_download(tmp_path, "org/name", "--repo-type", "dataset", HF_HUB_OFFLINE="1")
    cache = tmp_path / "cache"
    assert_clear_error(
        result,
        f"repo 'org/name' (dataset) is not in the local Hugging Face cache ({cache}) and HF_HUB_OFFLINE=1 is set",
    )


# Network: a loopback server that speaks the hub's file API.


@pytest.fixture
def endpoint(loopback_hub) -> str:
    """A loopback hub (tests/core/download/conftest.py) with the model org/name and the dataset org/data."""
    return loopback_hub({("model", "org/name"): (COMMIT, FILES), ("dataset", "org/data"): (COMMIT, FILES)})


@pytest.mark.parametrize(("repo_type", "repo_id"), [("model", "org/name"), ("dataset", "org/data")])
def test_network_download_into_local_dir(tmp_path: Path, endpoint: str, repo_type: str, repo_id: str) -> None:
    out = tmp_path / "out"
    result = slime_download(tmp_path, repo_id, "--repo-type", repo_type, "--local-dir", str(out), HF_ENDPOINT=endpoint)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out.resolve())
    assert_files(out, FILES)


def test_network_download_fills_the_cache_for_offline_use(tmp_path: Path, endpoint: str) -> None:
    result = slime_download(tmp_path, "org/name", HF_ENDPOINT=endpoint)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == tmp_path / "cache" / "models--org--name" / "snapshots" / COMMIT

    out = tmp_path / "out"
    result = slime_download(tmp_path, "org/name", "--local-dir", str(out), HF_HUB_OFFLINE="1")
    assert result.returncode == 0, result.stderr
    assert_files(out, FILES)


def test_network_unknown_repo_is_a_clear_error(tmp_path: Path, endpoint: str) -> None:
    # org/data exists only as a dataset: a model of that name is a 404.
    result = slime_download(tmp_path, "org/data", HF_ENDPOINT=endpoint)
    assert_clear_error(result, f"repo 'org/data' (model) not found at {endpoint}")


def test_network_unknown_revision_is_a_clear_error(tmp_path: Path, endpoint: str) -> None:
    result = slime_download(tmp_path, "org/name", "--revision", "v9", HF_ENDPOINT=endpoint)
    assert_clear_error(result, f"revision 'v9' of repo 'org/name' (model) not found at {endpoint}")


def test_network_unreachable_hub_is_a_clear_error(tmp_path: Path) -> None:
    # A port that was just free: nothing listens there, so connecting is refused at once.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = slime_download(tmp_path, "org/name", HF_ENDPOINT=closed)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"slime download: error: cannot reach the Hugging Face hub at {closed}: ")
