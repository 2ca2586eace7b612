"""`slime download`: fetch a model or dataset repo from the Hugging Face hub, or from the local hub cache offline.

    slime download zhuzilin/dapo-math-17k --repo-type dataset --local-dir /data/dapo-math-17k

huggingface_hub reads `HF_ENDPOINT`, `HF_HUB_OFFLINE` and the cache location once, when it is imported, so this
module reads them back from `huggingface_hub.constants`: messages name the endpoint and cache actually in use.
Every failure a user can fix (unknown repo, unreachable hub, repo not cached offline) is a one-line `SlimeError`.
"""

import argparse
import shutil
from pathlib import Path

import httpx
from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import filter_repo_objects
from huggingface_hub.utils import tqdm as hf_tqdm

from slime.errors import SlimeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of `slime download` to `parser`."""
    parser.add_argument("repo_id", help="hub repo id, e.g. Qwen/Qwen3-4B or zhuzilin/dapo-math-17k")
    parser.add_argument("--repo-type", choices=["model", "dataset"], default="model")
    parser.add_argument(
        "--local-dir", type=Path, default=None, help="put the files here (default: leave them in the hub cache)"
    )
    parser.add_argument("--revision", default=None, help="branch, tag or commit hash (default: main)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="hub cache (default: HF_HUB_CACHE)")
    parser.add_argument(
        "--include", nargs="+", action="extend", default=None, metavar="PATTERN", help="only files matching a glob"
    )
    parser.add_argument(
        "--exclude", nargs="+", action="extend", default=None, metavar="PATTERN", help="skip files matching a glob"
    )


def run(args: argparse.Namespace) -> int:
    """Download what `args` names, print the local path on stdout and return the exit status."""
    path = download(
        args.repo_id,
        repo_type=args.repo_type,
        revision=args.revision,
        local_dir=args.local_dir,
        cache_dir=args.cache_dir,
        include=args.include,
        exclude=args.exclude,
    )
    print(path)
    return 0


def download(
    repo_id: str,
    *,
    repo_type: str = "model",
    revision: str | None = None,
    local_dir: Path | None = None,
    cache_dir: Path | None = None,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
) -> Path:
    """Download a repo snapshot and return its local folder: `local_dir` if given, else the snapshot in the cache."""
    if constants.HF_HUB_OFFLINE:
        return _from_cache(repo_id, repo_type, revision, local_dir, cache_dir, include, exclude)
    return _from_hub(repo_id, repo_type, revision, local_dir, cache_dir, include, exclude)


def _from_hub(
    repo_id: str,
    repo_type: str,
    revision: str | None,
    local_dir: Path | None,
    cache_dir: Path | None,
    include: list[str] | None,
    exclude: list[str] | None,
) -> Path:
    endpoint = constants.ENDPOINT
    repo = f"repo {repo_id!r} ({repo_type})"
    try:
        path = snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            local_dir=local_dir,
            cache_dir=cache_dir,
            allow_patterns=include,
            ignore_patterns=exclude,
        )
    except RevisionNotFoundError as error:
        raise SlimeError(f"revision {revision!r} of {repo} not found at {endpoint}") from error
    except GatedRepoError as error:
        raise SlimeError(f"{repo} at {endpoint} is gated: accept its terms on the hub and set HF_TOKEN") from error
    except RepositoryNotFoundError as error:
        raise SlimeError(f"{repo} not found at {endpoint}") from error
    except HfHubHTTPError as error:
        raise SlimeError(_http_error_message(error, endpoint)) from error
    except LocalEntryNotFoundError as error:
        # snapshot_download turns "the hub is unreachable and the cache has nothing" into this error; the real
        # reason (a connection error, or an HTTP error such as a 500) is its cause.
        raise SlimeError(_unreachable_message(error.__cause__ or error, endpoint)) from error
    except httpx.HTTPError as error:  # proxy errors, and connections that drop in the middle of a file
        raise SlimeError(_unreachable_message(error, endpoint)) from error
    return Path(path)


def _from_cache(
    repo_id: str,
    repo_type: str,
    revision: str | None,
    local_dir: Path | None,
    cache_dir: Path | None,
    include: list[str] | None,
    exclude: list[str] | None,
) -> Path:
    cache = cache_dir or Path(constants.HF_HUB_CACHE)
    what = f"repo {repo_id!r} ({repo_type})" + (f" at revision {revision!r}" if revision else "")
    try:
        # local_files_only, not just HF_HUB_OFFLINE: offline, snapshot_download otherwise tries to list a commit
        # hash's files on the hub, and with local_dir set it never looks in the cache at all.
        snapshot = snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=True,
            allow_patterns=include,
            ignore_patterns=exclude,
        )
    except IncompleteSnapshotError as error:
        raise SlimeError(
            f"{what} is only partly in the local Hugging Face cache ({cache}) and HF_HUB_OFFLINE=1 is set"
        ) from error
    except LocalEntryNotFoundError as error:
        raise SlimeError(
            f"{what} is not in the local Hugging Face cache ({cache}) and HF_HUB_OFFLINE=1 is set"
        ) from error
    if local_dir is None:
        return Path(snapshot)
    _copy_snapshot(Path(snapshot), local_dir, include, exclude)
    return local_dir.resolve()


def _copy_snapshot(snapshot: Path, local_dir: Path, include: list[str] | None, exclude: list[str] | None) -> None:
    """Copy the files of a cached snapshot (symlinks into `blobs/`) into `local_dir` as plain files."""
    files = sorted(path.relative_to(snapshot).as_posix() for path in snapshot.rglob("*") if path.is_file())
    # The cache returns the whole snapshot whatever the patterns, so filter here the way the hub download does.
    selected = list(filter_repo_objects(files, allow_patterns=include, ignore_patterns=exclude))
    total = sum((snapshot / name).stat().st_size for name in selected)
    with hf_tqdm(total=total, unit="B", unit_scale=True, desc=f"Copying {len(selected)} files from cache") as bar:
        for name in selected:
            target = local_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(snapshot / name, target)
            bar.update(target.stat().st_size)


def _http_error_message(error: HfHubHTTPError, endpoint: str) -> str:
    return f"the hub at {endpoint} answered {error.response.status_code} for {error.response.url}"


def _unreachable_message(error: BaseException, endpoint: str) -> str:
    if isinstance(error, HfHubHTTPError):
        return _http_error_message(error, endpoint)
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"cannot reach the Hugging Face hub at {endpoint}: {reason}"
