"""``remote_rm``: the reward is whatever a reward server answers to an HTTP POST.

The request is ``POST --rm-url`` with JSON ``{"prompt", "response", "label"}``; the reply's JSON (a number or an
object) is the reward. Connection failures, timeouts, 408, 429 and 5xx answers are retried with exponential backoff
(with jitter, so that many samples failing together do not retry in lockstep); other 4xx answers are not, since
asking again cannot help. A bearer token for the server is read from ``SLIME_RM_TOKEN``: an environment variable
rather than a flag, because flags are logged (and uploaded with a run's config), and it never appears in messages.

Tuning (attributes of ``args`` when present, defaults as in slime): ``rm_timeout`` seconds per request (120),
``rm_max_retries`` (10), ``rm_retry_backoff`` seconds before the first retry, doubled each time up to 30 (1.0).
"""

import asyncio
import logging
import os
import random
import weakref
from typing import Any

import httpx

from slime.errors import ConfigError
from slime.types import Sample

logger = logging.getLogger(__name__)

TOKEN_ENV = "SLIME_RM_TOKEN"
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MAX_RETRIES = 10
DEFAULT_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
MAX_CONNECTIONS = 64

# One client (one connection pool) per event loop: an httpx client must not be shared across loops.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


class RemoteRewardError(RuntimeError):
    """The reward server did not give a usable reward."""


def shared_client() -> httpx.AsyncClient:
    """The running event loop's client, shared by all requests so connections are reused."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)
        client = _clients[loop] = httpx.AsyncClient(limits=limits)
    return client


async def close_shared_client() -> None:
    """Close the running event loop's client (at the end of a run; the next request opens a new one)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


def _setting(args: Any, name: str, default: float) -> float:
    value = getattr(args, name, None)
    return default if value is None else value


def _reward_from(response: httpx.Response, url: str) -> float | dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        raise RemoteRewardError(f"reward server {url} answered with invalid JSON: {response.text[:200]!r}") from None
    if isinstance(value, dict) or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    raise RemoteRewardError(
        f"reward server {url} answered {type(value).__name__} {value!r:.80}; expected a number or an object"
    )


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


async def remote_rm(args: Any, sample: Sample) -> float | dict[str, Any]:
    """POST the sample to ``--rm-url`` and return the server's JSON answer, retrying transient failures."""
    url = getattr(args, "rm_url", None)
    if not url:
        raise ConfigError("--rm-type remote_rm needs --rm-url (the reward server's address)")
    timeout = float(_setting(args, "rm_timeout", DEFAULT_TIMEOUT_S))
    retries = int(_setting(args, "rm_max_retries", DEFAULT_MAX_RETRIES))
    backoff = float(_setting(args, "rm_retry_backoff", DEFAULT_BACKOFF_S))
    token = os.environ.get(TOKEN_ENV)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    payload = {"prompt": sample.prompt, "response": sample.response, "label": sample.label}

    problem = ""
    for attempt in range(retries + 1):
        if attempt:
            delay = min(backoff * 2 ** (attempt - 1), MAX_BACKOFF_S) * random.uniform(0.5, 1.0)
            logger.warning("reward server %s: %s; retry %d/%d in %.2f s", url, problem, attempt, retries, delay)
            await asyncio.sleep(delay)
        try:
            response = await shared_client().post(url, json=payload, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            problem = f"no answer within {timeout} s"
            continue
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__}: {exc}"
            continue
        if response.is_success:
            return _reward_from(response, url)
        problem = f"HTTP {response.status_code} {response.text[:200]!r}"
        if not _retryable(response.status_code):
            raise RemoteRewardError(f"reward server {url} answered {problem}")
    raise RemoteRewardError(f"reward server {url} failed {retries + 1} times; last: {problem}")
