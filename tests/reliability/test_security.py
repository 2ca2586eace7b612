"""Security: no unsafe deserialisation or eval in slime's code, secrets never written, servers on loopback, and
reward servers named only by the user's flags, never by the data."""

import ast
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from slime.config.arguments import parse_args
from slime.errors import PluginError
from slime.rollout.reward import compute_reward
from slime.types import Sample
from slime_testkit.json_server import JSONServer

REPO = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = [REPO / "packages", REPO / "plugins"]

# ---- unsafe loading and eval in the package source ----

UNSAFE_CALLS = {
    ("pickle", "load"): "pickle runs code from the file",
    ("pickle", "loads"): "pickle runs code from the data",
    ("cloudpickle", "load"): "pickle runs code from the file",
    ("cloudpickle", "loads"): "pickle runs code from the data",
    ("dill", "load"): "pickle runs code from the file",
    ("dill", "loads"): "pickle runs code from the data",
    ("marshal", "loads"): "marshal loads code objects",
    ("shelve", "open"): "shelve is pickle",
    ("joblib", "load"): "joblib unpickles",
    ("yaml", "unsafe_load"): "builds arbitrary Python objects",
    ("yaml", "full_load"): "builds Python objects",
}


def unsafe_calls(source: str, filename: str) -> list[str]:
    """Every call in ``source`` that can run code hidden in data: pickle and friends, ``torch.load`` without
    ``weights_only=True``, ``yaml.load`` without a safe loader, ``np.load(allow_pickle=True)``, the builtins
    ``eval``/``exec``, ``trust_remote_code=True``, ``shell=True``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        where = f"{filename}:{node.lineno}"
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        func = node.func
        name = (
            (func.value.id, func.attr) if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else None
        )
        if name in UNSAFE_CALLS:
            found.append(f"{where}: {name[0]}.{name[1]} ({UNSAFE_CALLS[name]})")
        if name == ("torch", "load") and not _is_true(keywords.get("weights_only")):
            found.append(f"{where}: torch.load without weights_only=True")
        if name == ("yaml", "load"):
            loader = keywords.get("Loader") or (node.args[1] if len(node.args) > 1 else None)
            if not (isinstance(loader, ast.Attribute) and loader.attr in ("SafeLoader", "CSafeLoader")):
                found.append(f"{where}: yaml.load without SafeLoader")
        if name in (("np", "load"), ("numpy", "load")) and _is_true(keywords.get("allow_pickle")):
            found.append(f"{where}: np.load(allow_pickle=True)")
        if isinstance(func, ast.Name) and func.id in ("eval", "exec"):
            found.append(f"{where}: builtin {func.id}()")
        for flag in ("trust_remote_code", "shell"):
            if _is_true(keywords.get(flag)):
                found.append(f"{where}: {flag}=True")
    return found


def _is_true(value: ast.expr | None) -> bool:
    return isinstance(value, ast.Constant) and value.value is True


def test_the_scanner_finds_each_unsafe_call():
    source = "\n".join(
        [
            "pickle.loads(blob)",
            "torch.load(path)",
            "torch.load(path, weights_only=False)",
            "yaml.load(text)",
            "yaml.load(text, Loader=yaml.Loader)",
            "np.load(path, allow_pickle=True)",
            "eval(expression)",
            "exec(code)",
            "AutoModel.from_pretrained(path, trust_remote_code=True)",
            "subprocess.run(command, shell=True)",
            # safe forms
            "torch.load(path, weights_only=True)",
            "yaml.load(text, Loader=yaml.SafeLoader)",
            "yaml.safe_load(text)",
            "model.eval()",
            "np.load(path)",
        ]
    )
    assert [line.split(": ", 1)[0] for line in unsafe_calls(source, "x.py")] == [f"x.py:{n}" for n in range(1, 11)]


def test_package_source_loads_no_code_from_data():
    files = [path for root in SOURCE_ROOTS for path in root.rglob("*.py") if ".venv" not in path.parts]
    assert len(files) > 100  # the scan saw the packages
    found = [hit for path in files for hit in unsafe_calls(path.read_text(), str(path.relative_to(REPO)))]
    assert found == []


# ---- secrets ----

WANDB_KEY = "wandbkey-0123456789abcdef0123456789abcdef"  # W&B keys are 40 characters
RM_TOKEN = "rm-token-fedcba9876543210"


class RewardServer(JSONServer):
    """A reward server that answers 503 to its first request (so the client logs a retry), then 1.0; it records
    the Authorization header of every request."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str | None]] = []  # (path, Authorization)

    def answer(self, path: str, payload: object, headers) -> tuple[int, object]:
        with self.lock:
            self.requests.append((path, headers.get("Authorization")))
            first = len(self.requests) == 1
        return (503, {"error": "warming up"}) if first else (200, 1.0)


@pytest.fixture
def reward_servers():
    with RewardServer() as first, RewardServer() as second:
        yield [first, second]


def test_secrets_are_in_no_file_and_no_console_line_of_a_run(tmp_path, reward_servers, tiny_model):
    """A real ``slime eval`` run (HF test backends) with W&B (offline) and TensorBoard on, a W&B key given as a flag
    and a reward-server token in the environment: the token reaches the reward server, and neither secret reaches
    anything written to the output directory or the console.

    The real stack's half of this check (`slime train` with Megatron + SGLang on CPU, its files, Ray's session logs
    and its console, the same two secrets) is folded into the real-stack kill/resume chain, whose four runs carry
    them: test_kill_resume.py::test_real_stack_engine_actor_and_driver_kills (it saves four starts of the stack)."""
    server = reward_servers[0]
    data = tmp_path / "heldout.jsonl"
    data.write_text('{"prompt": "1+1=", "label": "2"}\n{"prompt": "2+1=", "label": "3"}\n')
    out = tmp_path / "out"
    argv = [
        "eval", "--rollout-backend", "slime_testkit.hf_engine.HFEngine",
        "--actor-num-gpus-per-node", "1", "--rollout-num-gpus", "1", "--hf-checkpoint", str(tiny_model),
        "--input-key", "prompt", "--label-key", "label", "--eval-prompt-data", "heldout", str(data),
        "--rollout-max-response-len", "3",
        "--rm-type", "remote_rm", "--rm-url", server.url + "/score", "--rm-retry-backoff", "0.01",
        "--use-wandb", "--wandb-mode", "offline", "--wandb-key", WANDB_KEY, "--use-tensorboard",
        "--output-dir", str(out),
    ]  # fmt: skip
    env = dict(os.environ, SLIME_RM_TOKEN=RM_TOKEN, WANDB_MODE="offline")
    result = subprocess.run(
        [sys.executable, "-m", "slime.cli", *argv], capture_output=True, text=True, env=env, timeout=400
    )
    assert result.returncode == 0, result.stderr[-3000:]

    # The secrets were really used: the token went to the configured server (after one retried 503)...
    assert len(server.requests) == 3
    assert {auth for _, auth in server.requests} == {f"Bearer {RM_TOKEN}"}
    assert "retry 1/" in result.stderr  # the retry was logged (without the token, checked below)
    # ... and W&B wrote its offline run, with the key's flag in the run config, redacted.
    wandb_files = list((out / "wandb").rglob("*.wandb"))
    assert len(wandb_files) == 1 and b"<redacted>" in wandb_files[0].read_bytes()
    written = [path for path in out.rglob("*") if path.is_file()]
    assert any("tfevents" in path.name for path in written)
    for secret in (WANDB_KEY, RM_TOKEN):
        assert secret not in result.stdout + result.stderr
        leaks = [str(path) for path in written if secret.encode() in path.read_bytes()]
        assert leaks == [], f"{secret} written to {leaks}"


def test_sample_data_cannot_redirect_the_reward_client(reward_servers, tmp_path):
    """The reward server comes from --rm-url alone: keys in a sample's metadata that look like a URL are data, and
    the sample's rm_type may pick an installed reward function but never names code to import."""
    configured, other = reward_servers
    args = parse_args(["--rm-type", "remote_rm", "--rm-url", configured.url + "/score", "--rm-retry-backoff", "0.01"])
    redirecting = {key: other.url + "/steal" for key in ("rm_url", "url", "reward_url", "endpoint", "base_url")}
    sample = Sample(prompt="1+1=", response="2", label="2", metadata={"rm_type": "remote_rm", **redirecting})
    assert asyncio.run(compute_reward(args, sample)) == 1.0
    assert [path for path, _ in configured.requests] == ["/score", "/score"]  # a 503, then the answer
    assert other.requests == []

    (tmp_path / "rel_data_named_module.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_suffix('.ran').touch()\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        sample = Sample(prompt="x", response="y", metadata={"rm_type": "rel_data_named_module.reward"})
        with pytest.raises(
            PluginError,
            match=r"unknown reward function 'rel_data_named_module.reward' \(from the sample's metadata rm_type\)",
        ):
            asyncio.run(compute_reward(parse_args([]), sample))
    finally:
        sys.path.remove(str(tmp_path))
    assert not (tmp_path / "rel_data_named_module.ran").exists()  # the module named by the data never ran


# ---- servers bind to loopback ----


def test_servers_slime_starts_listen_on_loopback_only(tmp_path):
    """SGLang servers get ``--host 127.0.0.1`` (checked on the command line: a CPU server takes ~40 s to start);
    a real sglang-router is started and every socket it listens on (API and Prometheus metrics) is inspected."""
    from slime_sglang.router import SGLangRouter
    from slime_sglang.server import ServerConfig, server_command

    command = server_command(ServerConfig(model_path="model", port=30000, log_path=tmp_path / "engine.log", cpu=True))
    assert command[command.index("--host") + 1] == "127.0.0.1"

    router = SGLangRouter(tmp_path / "router.log")
    router.launch()
    try:
        pids = set(router.process.pids())
        listening = {
            c.laddr for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN and c.pid in pids
        }
    finally:
        router.shutdown()
    assert {address.port for address in listening} == {router.port, router.prometheus_port}
    assert {address.ip for address in listening} == {"127.0.0.1"}
