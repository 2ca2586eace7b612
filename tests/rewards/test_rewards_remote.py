"""remote_rm against a real HTTP server on 127.0.0.1 that fails, delays and succeeds."""

import argparse
import asyncio
import logging
import time

import pytest
from slime_rewards_remote.client import TOKEN_ENV, RemoteRewardError, remote_rm

from slime.errors import ConfigError
from slime.plugins import registered_by
from slime.rollout.reward import compute_reward, count_reward_errors
from slime.testing.contracts import check_reward_function
from slime.types import Sample, Status
from slime_testkit.json_server import JSONServer

TOKEN = "s3cret-token-value"


class RewardServer(JSONServer):
    """Scores ``1.0`` when the label is in the response. Per path: ``/ok``; ``/flaky`` answers 500 twice first;
    ``/slow`` sleeps 2 s on its first request; ``/down`` always 500; ``/auth`` wants the bearer token (401 else);
    ``/dict`` answers an object; ``/text`` answers a JSON string."""

    def __init__(self) -> None:
        super().__init__()
        self.hits: dict[str, int] = {}
        self.bodies: list[dict] = []
        self.headers_seen: list[str | None] = []

    def answer(self, path: str, payload: dict, headers) -> tuple[int, object]:
        with self.lock:
            hit = self.hits[path] = self.hits.get(path, 0) + 1
            self.bodies.append(payload)
            self.headers_seen.append(headers.get("Authorization"))
        score = 1.0 if str(payload["label"]) in payload["response"] else 0.0
        if path == "/flaky" and hit <= 2:
            return 500, {"error": "overloaded"}
        if path == "/slow" and hit == 1:
            time.sleep(2.0)
        if path == "/down":
            return 500, {"error": "down"}
        if path == "/auth" and headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {"error": "unauthorized"}
        if path == "/dict":
            return 200, {"score": score, "acc": bool(score)}
        if path == "/text":
            return 200, "great answer"
        return 200, score


@pytest.fixture
def server():
    with RewardServer() as server:
        yield server


def make_args(url: str, **overrides) -> argparse.Namespace:
    settings = {"rm_url": url, "rm_type": "remote_rm", "rm_timeout": 0.5, "rm_max_retries": 3, "rm_retry_backoff": 0.02}
    return argparse.Namespace(**(settings | overrides))


def sample(label: str = "42") -> Sample:
    return Sample(prompt=[{"role": "user", "content": "6*7?"}], response="It is 42.", label=label)


def test_success_sends_prompt_response_and_label(server):
    assert asyncio.run(remote_rm(make_args(server.url + "/ok"), sample())) == 1.0
    assert server.bodies == [{"prompt": [{"role": "user", "content": "6*7?"}], "response": "It is 42.", "label": "42"}]


def test_server_errors_are_retried_until_it_answers(server):
    assert asyncio.run(remote_rm(make_args(server.url + "/flaky"), sample())) == 1.0
    assert server.hits["/flaky"] == 3


def test_an_answer_slower_than_the_timeout_is_retried(server):
    start = time.monotonic()
    assert asyncio.run(remote_rm(make_args(server.url + "/slow"), sample())) == 1.0
    assert server.hits["/slow"] == 2
    assert time.monotonic() - start < 1.9  # gave up on the 2 s answer instead of waiting for it


def test_backoff_doubles_between_retries(server):
    start = time.monotonic()
    with pytest.raises(RemoteRewardError):
        asyncio.run(remote_rm(make_args(server.url + "/down", rm_retry_backoff=0.2), sample()))
    # Three retries wait 0.2, 0.4 and 0.8 s, each scaled by a jitter in [0.5, 1]: at least 0.7 s in all.
    assert 0.7 <= time.monotonic() - start < 5


def test_a_server_that_stays_down_fails_the_sample_and_the_run_goes_on(server):
    args = make_args(server.url + "/down")
    samples = [sample(), sample()]

    async def score_all():
        return await asyncio.gather(*(compute_reward(args, s) for s in samples))

    assert asyncio.run(score_all()) == [0.0, 0.0]
    assert server.hits["/down"] == 2 * 4  # first try and three retries each
    assert count_reward_errors(samples) == 2
    assert all(s.status is Status.FAILED and s.reward == 0.0 for s in samples)
    assert samples[0].metadata["reward_error"] == (
        f'RemoteRewardError: reward server {server.url}/down failed 4 times; last: HTTP 500 \'{{"error": "down"}}\''
    )


def test_the_token_is_sent_as_a_bearer_header_and_never_logged(server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert asyncio.run(remote_rm(make_args(server.url + "/auth"), sample())) == 1.0
    assert server.headers_seen == [f"Bearer {TOKEN}"]
    # A failing, retried request logs and raises without the token in any message.
    flaky = make_args(server.url + "/flaky", rm_max_retries=0)
    failed = sample()
    asyncio.run(compute_reward(flaky, failed))
    assert failed.status is Status.FAILED
    assert TOKEN not in caplog.text
    assert TOKEN not in failed.metadata["reward_error"]
    assert asyncio.run(remote_rm(make_args(server.url + "/flaky"), sample())) == 1.0
    assert TOKEN not in caplog.text


def test_a_client_error_is_not_retried(server, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(RemoteRewardError, match=r"answered HTTP 401"):
        asyncio.run(remote_rm(make_args(server.url + "/auth"), sample()))
    assert server.hits["/auth"] == 1


def test_dict_answers_are_the_reward_and_other_json_is_an_error(server):
    assert asyncio.run(remote_rm(make_args(server.url + "/dict"), sample())) == {"score": 1.0, "acc": True}
    with pytest.raises(RemoteRewardError, match="answered str 'great answer'; expected a number or an object"):
        asyncio.run(remote_rm(make_args(server.url + "/text"), sample()))


def test_nothing_listening_is_retried_then_fails(server):
    url = server.url + "/ok"
    server.shutdown()
    server.server_close()
    with pytest.raises(RemoteRewardError, match="failed 2 times; last: ConnectError"):
        asyncio.run(remote_rm(make_args(url, rm_max_retries=1), sample()))


def test_missing_url_stops_the_run():
    with pytest.raises(ConfigError, match="remote_rm needs --rm-url"):
        asyncio.run(compute_reward(make_args(None), sample()))


def test_plugin_registers_remote_rm_and_it_honours_the_contract(server):
    assert registered_by("rewards_remote") == {"reward_functions": ["remote_rm"]}
    samples = [sample(), sample(label="7")]
    assert check_reward_function("remote_rm", samples, make_args(server.url + "/ok")) == [1.0, 0.0]
