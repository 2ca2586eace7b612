"""The async ``/generate`` client: token ids in, tokens + log-probs + finish reason into the ``Sample``; abort.

Prompts go as ``input_ids``, never text: transformers 5 and SGLang can tokenize the same text differently for
Qwen2-type tokenizers (measured), and the trainer must see exactly the ids the engine saw.

HTTP is aiohttp's, not httpx's: httpx's connection pool scans every connection for every queued request each time a
request starts or ends, so with hundreds of requests in flight the rollout manager spent most of a rollout's CPU
there (py-spy; see docs/benchmarks.md).
"""

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from slime.types import Sample, Status
from slime_sglang.errors import RequestError

# Transient: the engine or router is restarting, overloaded or briefly unreachable; worth retrying.
TRANSIENT_STATUS = {500, 502, 503, 504}


class _LoopState:
    """An HTTP session and a semaphore belong to one event loop; each loop that generates gets its own."""

    def __init__(self, concurrency: int) -> None:
        # No read timeout: a long generation on a slow engine is not an error; dead engines are found by health.
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30.0),
        )
        self.concurrency = concurrency
        self.semaphore = asyncio.Semaphore(concurrency)
        # Requests take their slots one at a time: two requests each holding part of what they need never wait on
        # each other.
        self.taking = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def slots(self, count: int) -> AsyncIterator[None]:
        """``count`` of the ``concurrency`` slots for one request (one per sample it generates; all of them for a
        request of more samples than that)."""
        taken = 0
        try:
            async with self.taking:
                for _ in range(min(count, self.concurrency)):
                    await self.semaphore.acquire()
                    taken += 1
            yield
        finally:
            for _ in range(taken):
                self.semaphore.release()


class GenerateClient:
    """Sends ``/generate`` requests through the router, at most ``concurrency`` at a time.

    Requests for routed experts (``return_routed_experts``, routing replay) go to the router's workers directly,
    each to the one with the fewest of this client's requests in flight: sglang-router 0.3.2 (PyPI's newest) drops
    request fields it does not know, ``return_routed_experts`` among them, so through it no routes came back
    (measured).
    """

    def __init__(
        self,
        router_url: str,
        concurrency: int,
        retry_timeout: float = 600.0,
        check_engines: Callable[[], None] | None = None,
        return_routed_experts: bool = False,
    ) -> None:
        self.router_url = router_url
        self.return_routed_experts = return_routed_experts  # the experts each token went to (routing replay)
        self.concurrency = concurrency
        self.retry_timeout = retry_timeout
        # Called after a transient failure; raises when retrying is pointless (an engine died, no fault tolerance).
        self.check_engines = check_engines
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        # abort() bumps the epoch: a request of an older epoch that has not been answered yet becomes ABORTED.
        self.epoch = 0
        self.in_flight: dict[int, int] = {}  # epoch -> requests sent and not yet answered
        self.in_flight_per_worker: dict[str, int] = {}  # direct requests only
        self._workers: tuple[float, list[str]] = (0.0, [])  # when fetched, the router's worker URLs

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if loop not in self._loops:
            self._loops[loop] = _LoopState(self.concurrency)
        return self._loops[loop]

    async def generate(self, sample: Sample, sampling_params: dict[str, Any]) -> Sample:
        """Generate, or continue, ``sample``'s response (``max_new_tokens`` counts what already exists)."""
        if not sample.tokens:
            raise ValueError(f"sample {sample.index} has no tokens; tokenize the prompt before generating")
        params = dict(sampling_params)
        if params.get("max_new_tokens") is not None and sample.response_length:
            params["max_new_tokens"] -= sample.response_length
            if params["max_new_tokens"] <= 0:
                sample.status = Status.TRUNCATED
                return sample
        await self._request([sample], params)
        return sample

    async def generate_group(self, samples: list[Sample], sampling_params: dict[str, Any]) -> list[Sample]:
        """Fresh samples of one prompt as one request with SGLang's ``n``: the engine prefills the prompt once and
        samples ``len(samples)`` responses from it. The request holds as many of the concurrency slots."""
        if not samples[0].tokens:
            raise ValueError(f"sample {samples[0].index} has no tokens; tokenize the prompt before generating")
        await self._request(samples, {**sampling_params, "n": len(samples)} if len(samples) > 1 else sampling_params)
        return samples

    async def _request(self, samples: list[Sample], params: dict[str, Any]) -> None:
        """One ``/generate`` for ``samples`` (several: one prompt with ``n``); each gets its answer or ABORTED."""
        epoch = self.epoch
        payload = {"input_ids": list(samples[0].tokens), "sampling_params": params, "return_logprob": True}
        if self.return_routed_experts:
            payload["return_routed_experts"] = True
        state = self._state()
        async with state.slots(len(samples)):
            output = None if epoch != self.epoch else await self._post_generate(state, payload, epoch)
        if output is None:  # aborted before it was sent, or while waiting to retry
            for sample in samples:
                sample.status = Status.ABORTED
            return
        for sample, answer in zip(samples, output if isinstance(output, list) else [output], strict=True):
            apply_output(sample, answer)

    async def _post_generate(self, state: _LoopState, payload: dict, epoch: int) -> dict | None:
        deadline = None
        delay = 0.5
        while True:
            self.in_flight[epoch] = self.in_flight.get(epoch, 0) + 1
            url = await self._target(state)
            self.in_flight_per_worker[url] = self.in_flight_per_worker.get(url, 0) + 1
            try:
                async with state.http.post(url + "/generate", json=payload) as response:
                    if response.status == 200:
                        return await response.json()
                    error = f"HTTP {response.status}: {(await response.text())[:300]}"
                if response.status not in TRANSIENT_STATUS:
                    raise RequestError(f"/generate via {url} failed: {error}")
            except aiohttp.ClientError as exc:  # refused, reset, disconnected: the engine may be restarting
                error = f"{type(exc).__name__}: {exc}"
            finally:
                self.in_flight[epoch] -= 1
                self.in_flight_per_worker[url] -= 1
            if self.check_engines is not None:
                self.check_engines()
            deadline = deadline or time.monotonic() + self.retry_timeout
            if time.monotonic() > deadline:
                raise RequestError(
                    f"/generate via {url} kept failing for {self.retry_timeout:.0f} s; last error {error}"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            if epoch != self.epoch:
                return None

    async def _target(self, state: _LoopState) -> str:
        """Where the next ``/generate`` goes: the router, or for routed experts the least busy of its workers (the
        router's list, fetched at most once a second: engines come and go under fault tolerance)."""
        if not self.return_routed_experts:
            return self.router_url
        fetched, workers = self._workers
        if time.monotonic() - fetched > 1.0 or not workers:
            try:
                async with state.http.get(self.router_url + "/workers", timeout=aiohttp.ClientTimeout(30)) as response:
                    workers = [w["url"] for w in (await response.json())["workers"]]
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                pass  # keep the last list; with none, the router: the retry loop reports what is wrong there
            workers = workers or [self.router_url]
            self._workers = (time.monotonic(), workers)
        return min(workers, key=lambda url: self.in_flight_per_worker.get(url, 0))

    async def abort(self, worker_urls: list[str], timeout: float = 120.0) -> None:
        """Abort everything in flight on every worker; return once they are idle and our requests have returned.

        Requests not yet sent (waiting for the semaphore or to retry) come back ABORTED without being sent.
        """
        self.epoch += 1
        old_epochs = [e for e in self.in_flight if e < self.epoch]
        http = self._state().http
        deadline = time.monotonic() + timeout
        while True:
            await asyncio.gather(*(_abort_all(http, url) for url in worker_urls))
            await asyncio.sleep(0.2)
            loads = await asyncio.gather(*(_requests_on(http, url) for url in worker_urls))
            ours = sum(self.in_flight[e] for e in old_epochs)
            if sum(loads) == 0 and ours == 0:
                return
            if time.monotonic() > deadline:
                raise RequestError(
                    f"abort: after {timeout:.0f} s workers still report {sum(loads)} requests and {ours} of ours "
                    "are unanswered"
                )

    def close(self, timeout: float = 30.0) -> None:
        """Close the sessions of the loops still running (called from outside them, when the engine shuts down)."""
        try:
            own_loop = asyncio.get_running_loop()
        except RuntimeError:
            own_loop = None
        for loop, state in list(self._loops.items()):
            if loop.is_running() and loop is not own_loop:  # waiting on our own loop would never return
                asyncio.run_coroutine_threadsafe(state.http.close(), loop).result(timeout)
        self._loops.clear()

    async def aclose(self) -> None:
        """Close the HTTP session of the running loop."""
        state = self._loops.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.http.close()


def apply_output(sample: Sample, output: dict[str, Any]) -> None:
    """Append one ``/generate`` answer (tokens, log-probs, text, weight version, finish reason, routed experts) to
    ``sample``."""
    meta = output["meta_info"]
    pairs = meta.get("output_token_logprobs") or []  # [log-prob, token id, token text or None] per new token
    tokens = [int(p[1]) for p in pairs]
    log_probs = [float(p[0]) for p in pairs]
    sample.append_response_tokens(tokens=tokens, log_probs=log_probs, meta_info=meta, text=output.get("text", ""))


CONTROL_TIMEOUT = aiohttp.ClientTimeout(total=30)


async def _abort_all(http: aiohttp.ClientSession, worker_url: str) -> None:
    try:
        async with http.post(worker_url + "/abort_request", json={"abort_all": True}, timeout=CONTROL_TIMEOUT):
            pass
    except (aiohttp.ClientError, TimeoutError):
        pass  # a dead worker has nothing running


async def _requests_on(http: aiohttp.ClientSession, worker_url: str) -> int:
    """Running plus waiting requests on one worker, from ``/v1/loads`` (0 when it cannot be reached)."""
    try:
        async with http.get(worker_url + "/v1/loads", timeout=CONTROL_TIMEOUT) as response:
            loads = (await response.json())["loads"]
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
        return 0
    return sum(load["num_running_reqs"] + load["num_waiting_reqs"] for load in loads)
