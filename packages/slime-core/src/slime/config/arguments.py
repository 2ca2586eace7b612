"""slime's command-line flags (names and defaults as in slime), ``--config FILE.yaml``, and cross-flag rules.

Backends and plugins add their own flags through ``slime_add_arguments`` and check them in ``slime_validate_args``.
Every mistake ends in a ``ConfigError`` whose one line names the flag (and the config file, when it came from one).
"""

import argparse
import difflib
import json
import logging
from typing import Any

from slime.config.yaml_file import load_yaml
from slime.errors import ConfigError
from slime.plugins import plugin_manager
from slime.rollout.loss_mask import LOSS_MASK_TYPES

logger = logging.getLogger(__name__)


class SlimeArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are exceptions, so callers decide how to report them."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(message)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"invalid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster")
    group.add_argument("--train-backend", default="megatron", help="registered train backend")
    group.add_argument("--rollout-backend", default="sglang", help="registered rollout backend")
    group.add_argument("--actor-num-nodes", type=int, default=1)
    group.add_argument("--actor-num-gpus-per-node", type=int, default=8)
    group.add_argument(
        "--num-gpus-per-node",
        type=int,
        default=8,
        help="GPUs per node: spaces the engines' seeds (--seed + engine index x this) and bounds an engine's width; "
        "GPU ids come from Ray",
    )
    group.add_argument("--rollout-num-gpus", type=int, default=None, help="default: the actor's GPUs with --colocate")
    group.add_argument("--rollout-num-gpus-per-engine", type=int, default=1)
    group.add_argument("--colocate", action="store_true", help="engines and trainer share devices")
    group.add_argument("--offload", action="store_true", help="--offload-train and --offload-rollout")
    # Unset (None) follows --colocate; --no-offload-* keeps a colocated side resident.
    group.add_argument("--offload-train", action=argparse.BooleanOptionalAction, default=None)
    group.add_argument("--offload-rollout", action=argparse.BooleanOptionalAction, default=None)
    group.add_argument("--seed", type=int, default=1234)


def _add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("checkpoint")
    group.add_argument("--hf-checkpoint", default=None, help="HF model directory: architecture, tokenizer, weights")
    group.add_argument("--ref-load", default=None, help="reference model checkpoint (for KL terms)")
    group.add_argument("--load", default=None, help="checkpoint directory to resume from")
    group.add_argument("--save", default=None, help="checkpoint directory")
    group.add_argument("--save-interval", type=int, default=None, help="save every N rollouts")
    group.add_argument("--save-hf", default=None, help="also export HF weights to this path pattern")
    group.add_argument("--start-rollout-id", type=int, default=None, help="default: the checkpoint's iteration + 1")


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--prompt-data", default=None, help="jsonl or parquet file, optionally sliced: file@[start:end]")
    group.add_argument("--input-key", default="input")
    group.add_argument("--label-key", default=None)
    group.add_argument("--metadata-key", default="metadata")
    group.add_argument("--tool-key", default="tools")
    group.add_argument("--apply-chat-template", action="store_true")
    group.add_argument("--apply-chat-template-kwargs", type=_json_object, default={})
    group.add_argument("--rollout-shuffle", action="store_true")
    group.add_argument("--rollout-seed", type=int, default=42)
    group.add_argument("--rollout-max-prompt-len", type=int, default=None)
    group.add_argument("--num-rollout", type=int, default=None, help="default: dataset size x --num-epoch")
    group.add_argument("--num-epoch", type=int, default=None)
    group.add_argument("--data-source-path", default="default", help="registered data source or dotted path")


def _add_rollout_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("rollout")
    group.add_argument("--rollout-function-path", default="default", help="registered rollout function or dotted path")
    group.add_argument("--rollout-batch-size", type=int, default=None, help="prompts per rollout (required to train)")
    group.add_argument("--n-samples-per-prompt", type=int, default=1)
    group.add_argument("--over-sampling-batch-size", type=int, default=None, help="default: --rollout-batch-size")
    group.add_argument("--dynamic-sampling-filter-path", default=None)
    group.add_argument("--partial-rollout", action="store_true")
    group.add_argument("--mask-offpolicy-in-partial-rollout", action="store_true")
    group.add_argument("--rollout-temperature", type=float, default=1.0)
    group.add_argument("--rollout-top-p", type=float, default=1.0)
    group.add_argument("--rollout-top-k", type=int, default=-1)
    group.add_argument("--rollout-max-response-len", type=int, default=None)
    group.add_argument("--rollout-max-context-len", type=int, default=None)
    group.add_argument("--rollout-stop", nargs="+", default=None)
    group.add_argument("--rollout-stop-token-ids", type=int, nargs="+", default=None)
    group.add_argument("--rollout-skip-special-tokens", action="store_true")
    group.add_argument("--custom-generate-function-path", default=None)
    group.add_argument(
        "--rollout-per-sample-requests",
        action="store_true",
        help="one engine request per sample, as slime sends them; by default a group of the default generate "
        "function that shares a fresh prompt is one request (SGLang's n: the prompt is prefilled once)",
    )
    # slime repeats the flag (action="append"); one flag with several paths works too.
    group.add_argument("--rollout-sample-hook-path", action="extend", nargs="+", default=None)
    group.add_argument("--rollout-sample-filter-path", default=None)
    group.add_argument("--rollout-all-samples-process-path", default=None)
    group.add_argument("--buffer-filter-path", default=None)
    group.add_argument("--global-batch-size", type=int, default=None, help="samples per optimizer step")
    group.add_argument("--num-steps-per-rollout", type=int, default=None)
    group.add_argument("--micro-batch-size", type=int, default=1)
    group.add_argument(
        "--balance-data",
        action="store_true",
        help="give each data-parallel rank an equal share of every step's tokens (not only of its samples)",
    )
    group.add_argument(
        "--data-pad-size-multiplier",
        type=int,
        default=128,
        help="slime pads packed (THD) sequences to a multiple of this; padded micro-batches do not use it",
    )
    group.add_argument(
        "--log-probs-chunk-size",
        type=int,
        default=-1,
        help="compute log-probs over this many tokens at a time, to bound memory (-1: all at once)",
    )
    group.add_argument("--use-dynamic-batch-size", action="store_true")
    group.add_argument("--max-tokens-per-gpu", type=int, default=None)
    group.add_argument("--log-probs-max-tokens-per-gpu", type=int, default=None)
    group.add_argument("--update-weights-interval", type=int, default=1)
    group.add_argument(
        "--async",
        dest="async_training",
        action="store_true",
        help="generate the next rollout while training on this one (slime's train_async.py)",
    )
    group.add_argument(
        "--max-staleness",
        type=int,
        default=None,
        help="how many policy versions a sample's generation may start before the policy it trains: the fully "
        "asynchronous rollout drops older groups, the loop refuses older data (default: what the loop's order "
        "gives, --async and --update-weights-interval; one more with the fully asynchronous rollout)",
    )
    group.add_argument(
        "--update-weight-transport",
        choices=["distributed", "nccl", "disk"],
        default="distributed",
        help="how weights reach the engines: the rollout backend's own transport (SGLang: nccl on GPU; on CPU shared "
        "memory to engines on the trainer's host, else gloo; 'nccl' is slime's name) or an HF checkpoint on disk",
    )
    group.add_argument("--update-weight-disk-dir", default=None, help="default: <output-dir>/weights")
    group.add_argument(
        "--update-weight-buffer-size", type=int, default=512 * 1024**2, help="bytes per bucket of a weight update"
    )
    group.add_argument("--use-fault-tolerance", action="store_true")
    group.add_argument("--rollout-health-check-interval", type=float, default=30.0)
    group.add_argument("--rollout-health-check-timeout", type=float, default=30.0)
    group.add_argument("--rollout-health-check-first-wait", type=float, default=0.0)
    group.add_argument(
        "--debug-rollout-only",
        action="store_true",
        help="generate (and evaluate) only: no trainer; engines keep --hf-checkpoint's weights; nothing is saved",
    )
    group.add_argument(
        "--debug-train-only",
        action="store_true",
        help="train only: no rollout engine; the rollout comes from --load-debug-rollout-data or a rollout function "
        "that does not generate (e.g. sft)",
    )
    group.add_argument(
        "--save-debug-rollout-data", default=None, help="JSON dump of each rollout's samples; {rollout_id} in the path"
    )
    group.add_argument(
        "--load-debug-rollout-data",
        default=None,
        help="train on dumps of --save-debug-rollout-data ({rollout_id} in the path); implies --debug-train-only",
    )


def _add_reward_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reward")
    group.add_argument("--rm-type", default=None, help="registered reward function")
    group.add_argument("--custom-rm-path", default=None, help="dotted path of a reward function")
    group.add_argument("--reward-key", default=None, help="key of dict rewards to train on")
    group.add_argument("--eval-reward-key", default=None, help="default: --reward-key")
    group.add_argument("--group-rm", action="store_true", help="score a whole group in one call")
    group.add_argument("--rm-url", default=None, help="remote reward server URL")
    group.add_argument("--rm-timeout", type=float, default=120.0, help="seconds per remote reward request")
    group.add_argument("--rm-max-retries", type=int, default=10, help="retries of a failed remote reward request")
    group.add_argument("--rm-retry-backoff", type=float, default=1.0, help="first retry delay (s), doubled each time")
    group.add_argument(
        "--reward-timeout", type=float, default=None, help="seconds a reward may take before its sample fails"
    )
    group.add_argument("--custom-reward-post-process-path", default=None)


def _add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("eval")
    group.add_argument("--eval-interval", type=int, default=None)
    group.add_argument("--eval-prompt-data", nargs="+", default=None, help="name1 path1 name2 path2 ...")
    group.add_argument("--eval-config", default=None, help="YAML with eval defaults and datasets")
    group.add_argument("--eval-function-path", default=None, help="default: --rollout-function-path")
    group.add_argument("--n-samples-per-eval-prompt", type=int, default=1)
    group.add_argument("--eval-max-response-len", type=int, default=None)
    group.add_argument("--eval-temperature", type=float, default=None)
    group.add_argument("--eval-top-p", type=float, default=None)
    group.add_argument("--eval-top-k", type=int, default=None)
    group.add_argument("--eval-input-key", default=None)
    group.add_argument("--eval-label-key", default=None)
    group.add_argument("--eval-tool-key", default=None, help="default: --tool-key")
    group.add_argument("--skip-eval-before-train", action="store_true")


def _add_algorithm_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("algorithm")
    group.add_argument("--advantage-estimator", default="grpo", help="registered advantage estimator")
    group.add_argument("--loss-type", default="policy_loss", help="registered policy loss")
    group.add_argument("--eps-clip", type=float, default=0.2)
    group.add_argument("--eps-clip-high", type=float, default=None, help="default: --eps-clip")
    group.add_argument("--eps-clip-c", type=float, default=None, help="dual-clip bound (> 1)")
    group.add_argument("--value-clip", type=float, default=0.2)
    group.add_argument("--kl-coef", type=float, default=0.0, help="KL penalty in the reward")
    group.add_argument("--use-kl-loss", action="store_true")
    group.add_argument("--kl-loss-coef", type=float, default=0.0)
    group.add_argument("--kl-loss-type", choices=["k1", "k2", "k3", "low_var_kl"], default="k1")
    group.add_argument("--use-unbiased-kl", action="store_true")
    group.add_argument(
        "--ref-update-interval",
        type=int,
        default=None,
        help="copy the actor's weights into the reference model after every N-th rollout (default: never)",
    )
    group.add_argument(
        "--keep-old-actor",
        action="store_true",
        help="compute the old policy's log-probs with a kept copy of the weights the engines generated with",
    )
    group.add_argument("--entropy-coef", type=float, default=0.0)
    group.add_argument("--normalize-advantages", action="store_true")
    group.add_argument("--disable-grpo-std-normalization", action="store_true")
    group.add_argument("--disable-rewards-normalization", action="store_true")
    group.add_argument("--gamma", type=float, default=1.0)
    group.add_argument("--lambd", type=float, default=1.0)
    group.add_argument("--use-tis", action="store_true")
    group.add_argument("--tis-clip", type=float, default=2.0)
    group.add_argument("--tis-clip-low", type=float, default=0.0)
    group.add_argument(
        "--custom-tis-function-path",
        default=None,
        help="importance weights for --use-tis: vanilla_tis (default), icepop, mis, or a registered name / dotted path",
    )
    # MIS (--custom-tis-function-path mis): keys of slime's examples/train_infer_mismatch_helper/mis.yaml.
    group.add_argument("--tis-mode", choices=["truncate", "clip", "mask"], default="truncate")
    group.add_argument("--tis-level", choices=["token", "sequence", "geometric"], default="token")
    group.add_argument("--tis-lower-bound", type=float, default=None, help="default: 1 / --tis-upper-bound")
    group.add_argument("--tis-upper-bound", type=float, default=2.0)
    group.add_argument("--tis-batch-normalize", action="store_true", help="rescale MIS weights to mean 1")
    group.add_argument("--use-rs", action="store_true", help="MIS: also reject tokens/sequences out of the RS bounds")
    group.add_argument("--rs-level", choices=["token", "sequence", "geometric"], default="token")
    group.add_argument("--rs-lower-bound", type=float, default=None, help="default: the TIS lower bound")
    group.add_argument("--rs-upper-bound", type=float, default=None, help="default: --tis-upper-bound")
    group.add_argument("--rs-veto-threshold", type=float, default=None, help="reject a sequence with a ratio below it")
    group.add_argument(
        "--get-mismatch-metrics", action="store_true", help="log train-vs-rollout log-prob gaps (train/mis_*)"
    )
    group.add_argument("--use-opsm", action="store_true", help="off-policy sequence masking")
    group.add_argument("--opsm-delta", type=float, default=1e-4)
    group.add_argument(
        "--use-rollout-entropy",
        action="store_true",
        help="compute the entropy with the log-probs of the policy and reference before training (rollout/entropy)",
    )
    group.add_argument("--use-rollout-logprobs", action="store_true", help="use the engine's log-probs as old policy")
    group.add_argument("--calculate-per-token-loss", action="store_true")
    group.add_argument(
        "--use-routing-replay",
        action="store_true",
        help="MoE: training replays the experts the old-policy forward chose for each token (arXiv 2507.18071)",
    )
    group.add_argument(
        "--use-rollout-routing-replay",
        action="store_true",
        help="MoE (R3): training replays the experts the rollout engine chose for each token (arXiv 2510.11370)",
    )
    group.add_argument("--num-critic-only-steps", type=int, default=0)
    group.add_argument(
        "--disable-compute-advantages-and-returns",
        action="store_false",
        dest="compute_advantages_and_returns",
        help="train without advantages or returns (SFT, or a loss that does not read them)",
    )


def _add_distillation_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("on-policy distillation")
    group.add_argument("--use-opd", action="store_true", help="add the teacher's reverse KL to the advantages")
    group.add_argument(
        "--opd-type",
        choices=["sglang", "megatron"],
        default=None,
        help="the teacher: an SGLang server at --rm-url, or a Megatron checkpoint (--opd-teacher-load)",
    )
    group.add_argument("--opd-kl-coef", type=float, default=1.0)
    group.add_argument("--opd-teacher-load", default=None, help="teacher checkpoint for --opd-type megatron")
    group.add_argument("--opd-teacher-ckpt-step", type=int, default=None)


def _add_multi_turn_arguments(parser: argparse.ArgumentParser) -> None:
    # Names as slime's examples call these settings (args.max_turns, retool's tool_concurrency).
    group = parser.add_argument_group("multi-turn (generate function multi_turn_tools, SFT conversations)")
    group.add_argument("--max-turns", type=int, default=16, help="model turns per sample; more is TRUNCATED")
    group.add_argument("--tool-timeout", type=float, default=30.0, help="seconds a tool call may run")
    group.add_argument("--tool-concurrency", type=int, default=32, help="tool calls running at once")
    group.add_argument(
        "--loss-mask-type",
        choices=LOSS_MASK_TYPES,
        default="qwen",
        help="how SFT masks a conversation (a message-list prompt): qwen, qwen3, qwen3_5 train each assistant turn "
        "(tool calls included) after the template's generation prompt; distill_qwen trains the last message only",
    )


def _add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument("--output-dir", default="outputs", help="where metrics.jsonl and run files go")
    group.add_argument("--wandb-always-use-train-step", action="store_true")
    group.add_argument("--log-passrate", action="store_true")
    group.add_argument("--log-multi-turn", action="store_true")


def _add_custom_function_arguments(parser: argparse.ArgumentParser) -> None:
    """slime's dotted-path hooks not tied to one stage's flags above (docs/custom-functions.md)."""
    group = parser.add_argument_group("custom functions")
    group.add_argument("--custom-convert-samples-to-train-data-path", default=None, help="f(args, samples) -> dict")
    group.add_argument(
        "--rollout-data-postprocess-path", default=None, help="f(args, rollout_id, rollout_data), before training"
    )
    group.add_argument("--custom-loss-function-path", default=None, help="the loss of --loss-type custom_loss")
    group.add_argument(
        "--custom-pg-loss-reducer-function-path",
        default=None,
        help="f(total_lengths, response_lengths, loss_masks, calculate_per_token_loss) -> reducer of pg_loss",
    )
    group.add_argument(
        "--custom-rollout-log-function-path",
        default=None,
        help="f(rollout_id, args, samples, extra_metrics, rollout_time) -> bool (True: skip the default logging)",
    )
    group.add_argument(
        "--custom-eval-rollout-log-function-path",
        default=None,
        help="f(rollout_id, args, data, extra_metrics) -> bool (True: skip the default logging)",
    )


def build_parser(prog: str = "slime") -> SlimeArgumentParser:
    """slime's flags plus every installed plugin's (through ``slime_add_arguments``)."""
    parser = SlimeArgumentParser(prog=prog, allow_abbrev=False)
    parser.add_argument("--config", default=None, help="YAML file of flags (keys = flag names); the command line wins")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve, check and print the whole configuration, then exit before Ray starts",
    )
    parser.add_argument(
        "--custom-config-path",
        default=None,
        help="YAML of extra attributes set on args (what custom functions read); they override flags of the same name",
    )
    for add in (
        _add_cluster_arguments,
        _add_checkpoint_arguments,
        _add_data_arguments,
        _add_rollout_arguments,
        _add_reward_arguments,
        _add_eval_arguments,
        _add_algorithm_arguments,
        _add_distillation_arguments,
        _add_multi_turn_arguments,
        _add_logging_arguments,
        _add_custom_function_arguments,
    ):
        add(parser)
    plugin_manager().hook.slime_add_arguments(parser=parser)
    return parser


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Long option string (``--rollout-batch-size``) -> its action."""
    return {opt: action for action in parser._actions for opt in action.option_strings if opt.startswith("--")}


def _config_tokens(parser: argparse.ArgumentParser, path: str) -> list[str]:
    """Turn a YAML mapping of flag names into command-line tokens, so YAML values get the flags' own parsing."""
    data = load_yaml(path, "--config")
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of flag names to values, got {type(data).__name__}")
    options = _options(parser)
    tokens: list[str] = []
    for key, value in data.items():
        flag = "--" + str(key).replace("_", "-")
        if flag not in options or flag == "--config":
            raise ConfigError(f"{path}: unknown key '{key}' (no flag {flag}){_suggestion(flag, options)}")
        action = options[flag]
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction | argparse.BooleanOptionalAction):
            if not isinstance(value, bool):
                raise ConfigError(f"{path}: key '{key}' must be true or false, got {value!r}")
            if isinstance(action, argparse.BooleanOptionalAction):
                tokens.append(flag if value else "--no-" + flag[2:])
            elif value == isinstance(action, argparse._StoreTrueAction):
                tokens.append(flag)
            continue
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and action.nargs in (None, "?"):
            raise ConfigError(f"{path}: key '{key}' takes one value, got a list")
        tokens.append(flag)
        tokens.extend(json.dumps(v) if isinstance(v, dict) else str(v) for v in values)
    return tokens


def _suggestion(flag: str, options: dict[str, argparse.Action]) -> str:
    close = difflib.get_close_matches(flag, options, n=1)
    return f"; did you mean {close[0]}?" if close else ""


def parse_args(argv: list[str] | None = None, prog: str = "slime") -> argparse.Namespace:
    """Parse ``argv`` (with ``--config``), then check slime's and every plugin's cross-flag rules."""
    parser = build_parser(prog)
    argv = list(argv) if argv is not None else []
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    config_path = pre.parse_known_args(argv)[0].config
    tokens: list[str] = []
    if config_path:
        tokens = _config_tokens(parser, config_path)
        try:
            parser.parse_args(tokens)  # reports a bad value as coming from the file
        except ConfigError as exc:
            raise ConfigError(f"{config_path}: {exc}") from None
    args, unknown = parser.parse_known_args(tokens + argv)
    if unknown:
        flag = next((u for u in unknown if u.startswith("-")), unknown[0])
        if flag.startswith("-"):
            raise ConfigError(f"unknown flag {flag.split('=')[0]}{_suggestion(flag.split('=')[0], _options(parser))}")
        raise ConfigError(f"unexpected argument {flag!r}")
    validate_args(args)
    return args


FULLY_ASYNC_ROLLOUTS = {"fully_async", "slime.rollout.fully_async_rollout.generate_rollout_fully_async"}


def default_max_staleness(args: argparse.Namespace) -> int:
    """What the loop's order gives: data one version old with --async, plus the updates --update-weights-interval
    skips. The fully asynchronous rollout's pool carries groups across one more update (they keep generating while
    the trainer trains)."""
    structural = int(args.async_training) + args.update_weights_interval - 1
    return structural + int(args.rollout_function_path in FULLY_ASYNC_ROLLOUTS)


def _fail(message: str) -> None:
    raise ConfigError(message)


def validate_args(args: argparse.Namespace) -> None:
    """slime's cross-flag rules (and derived defaults); then each plugin's ``slime_validate_args``."""
    if args.offload:
        args.offload_train = args.offload_rollout = True
    if args.offload_train is None:
        args.offload_train = args.colocate
    if args.offload_rollout is None:
        args.offload_rollout = args.colocate
    if args.rollout_num_gpus is None and args.colocate:
        args.rollout_num_gpus = args.actor_num_nodes * args.actor_num_gpus_per_node
    if args.load_debug_rollout_data:
        args.debug_train_only = True
    if args.use_rollout_routing_replay:
        args.use_routing_replay = True  # as in slime: replaying the engine's routes is a routing replay
    if args.debug_rollout_only and args.debug_train_only:
        both = "--load-debug-rollout-data" if args.load_debug_rollout_data else "--debug-train-only"
        _fail(f"--debug-rollout-only and {both} cannot be used together")
    if args.debug_train_only and args.eval_interval is not None:
        _fail("--eval-interval needs rollout engines, which --debug-train-only does not start; drop one of them")
    if args.async_training and args.colocate:
        _fail("--async overlaps generation with training on separate devices, so it cannot be used with --colocate")
    if args.async_training and (args.offload_train or args.offload_rollout):
        _fail("--async overlaps generation with training, so neither side can offload: drop --offload*")
    if args.update_weights_interval < 1:
        _fail(f"--update-weights-interval must be >= 1, got {args.update_weights_interval}")
    if args.max_staleness is None:
        args.max_staleness = default_max_staleness(args)
    elif args.max_staleness < 0:
        _fail(f"--max-staleness must be >= 0, got {args.max_staleness}")

    _validate_batch_sizes(args)
    _validate_algorithm(args)
    _validate_eval(args)

    if args.rollout_temperature <= 0:
        _fail(f"--rollout-temperature must be > 0, got {args.rollout_temperature}")
    if args.rollout_max_prompt_len is None and args.rollout_max_context_len is not None:
        args.rollout_max_prompt_len = args.rollout_max_context_len - 1
    if args.mask_offpolicy_in_partial_rollout and not args.partial_rollout:
        _fail("--mask-offpolicy-in-partial-rollout needs --partial-rollout")
    if args.save_interval is not None and not args.save:
        _fail("--save-interval needs --save (where to write checkpoints)")
    if args.use_dynamic_batch_size and args.max_tokens_per_gpu is None:
        _fail("--use-dynamic-batch-size needs --max-tokens-per-gpu")
    if args.log_probs_max_tokens_per_gpu is None:
        args.log_probs_max_tokens_per_gpu = args.max_tokens_per_gpu
    if args.log_probs_chunk_size == 0 or args.log_probs_chunk_size < -1:
        _fail(
            f"--log-probs-chunk-size must be a positive number of tokens or -1 (all), got {args.log_probs_chunk_size}"
        )
    for flag, value in (("--max-turns", args.max_turns), ("--tool-concurrency", args.tool_concurrency)):
        if value < 1:
            _fail(f"{flag} must be >= 1, got {value}")
    if args.tool_timeout <= 0:
        _fail(f"--tool-timeout must be > 0 seconds, got {args.tool_timeout}")
    if args.data_pad_size_multiplier < 1:
        _fail(f"--data-pad-size-multiplier must be >= 1, got {args.data_pad_size_multiplier}")
    if args.custom_config_path:
        _apply_custom_config(args)
    plugin_manager().hook.slime_validate_args(args=args)


def _apply_custom_config(args: argparse.Namespace) -> None:
    """slime's --custom-config-path: each top-level key becomes an attribute of args (after the flags, so it wins)."""
    data = load_yaml(args.custom_config_path, "--custom-config-path")
    if data is None:
        return
    if not isinstance(data, dict):
        _fail(f"--custom-config-path {args.custom_config_path}: expected a mapping, got {type(data).__name__}")
    for key, value in data.items():
        if not str(key).isidentifier():
            _fail(f"--custom-config-path {args.custom_config_path}: key {key!r} is not a valid attribute name")
        if hasattr(args, key):
            logger.info("--custom-config-path sets %s to %r (was %r)", key, value, getattr(args, key))
        setattr(args, key, value)


def _validate_batch_sizes(args: argparse.Namespace) -> None:
    for flag in ("rollout_batch_size", "n_samples_per_prompt", "global_batch_size", "num_steps_per_rollout"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            _fail(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if args.over_sampling_batch_size is None:
        args.over_sampling_batch_size = args.rollout_batch_size
    elif args.rollout_batch_size is not None and args.over_sampling_batch_size < args.rollout_batch_size:
        _fail(
            f"--over-sampling-batch-size ({args.over_sampling_batch_size}) must be >= "
            f"--rollout-batch-size ({args.rollout_batch_size})"
        )
    if args.rollout_batch_size is None:
        return
    samples = args.rollout_batch_size * args.n_samples_per_prompt
    if args.num_steps_per_rollout is not None:
        if samples % args.num_steps_per_rollout:
            _fail(
                f"--rollout-batch-size x --n-samples-per-prompt ({samples}) is not divisible by "
                f"--num-steps-per-rollout ({args.num_steps_per_rollout})"
            )
        derived = samples // args.num_steps_per_rollout
        if args.global_batch_size is not None and args.global_batch_size != derived:
            _fail(
                f"--global-batch-size ({args.global_batch_size}) contradicts --num-steps-per-rollout "
                f"({args.num_steps_per_rollout}): {samples} samples per rollout make {derived} per step"
            )
        args.global_batch_size = derived
    elif args.global_batch_size is None:
        args.global_batch_size = samples
    if samples % args.global_batch_size:
        _fail(
            f"--rollout-batch-size x --n-samples-per-prompt ({samples}) is not divisible by "
            f"--global-batch-size ({args.global_batch_size})"
        )
    args.num_steps_per_rollout = samples // args.global_batch_size
    if args.global_batch_size % args.micro_batch_size:
        _fail(
            f"--global-batch-size ({args.global_batch_size}) is not divisible by "
            f"--micro-batch-size ({args.micro_batch_size})"
        )


def _validate_algorithm(args: argparse.Namespace) -> None:
    if args.eps_clip_high is None:
        args.eps_clip_high = args.eps_clip
    if args.loss_type == "custom_loss" and not args.custom_loss_function_path:
        _fail("--loss-type custom_loss needs --custom-loss-function-path (the loss function's dotted path)")
    if args.eps_clip_c is not None and args.eps_clip_c <= 1.0:
        _fail(f"--eps-clip-c must be > 1 (dual-clip bound), got {args.eps_clip_c}")
    if args.kl_coef != 0 and args.use_kl_loss:
        _fail("--kl-coef (KL in the reward) and --use-kl-loss (KL as a loss) cannot be used together; choose one")
    if args.kl_loss_coef != 0 and not args.use_kl_loss:
        _fail("--kl-loss-coef is set but --use-kl-loss is not")
    if args.num_critic_only_steps < 0:
        _fail(f"--num-critic-only-steps must be >= 0, got {args.num_critic_only_steps}")
    if args.num_critic_only_steps and args.advantage_estimator != "ppo":
        _fail("--num-critic-only-steps trains PPO's critic alone first; it needs --advantage-estimator ppo")
    if args.ref_update_interval is not None:
        if args.ref_update_interval < 1:
            _fail(f"--ref-update-interval must be >= 1, got {args.ref_update_interval}")
        if not (args.use_kl_loss or args.kl_coef != 0):
            _fail("--ref-update-interval updates the reference model, which only --use-kl-loss or --kl-coef uses")
    if args.keep_old_actor and args.use_rollout_logprobs:
        _fail("--keep-old-actor computes the old log-probs; --use-rollout-logprobs takes the engine's instead")
    if args.use_tis and args.use_rollout_logprobs:
        _fail("--use-tis corrects toward the engine's log-probs, so it cannot be used with --use-rollout-logprobs")
    if args.advantage_estimator in ("reinforce_plus_plus", "reinforce_plus_plus_baseline") and not (
        args.normalize_advantages
    ):
        _fail(f"--advantage-estimator {args.advantage_estimator} needs --normalize-advantages")
    for flag in ("eps_clip", "value_clip", "tis_clip"):
        if getattr(args, flag) < 0:
            _fail(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    if args.tis_clip_low > args.tis_clip:
        _fail(f"--tis-clip-low ({args.tis_clip_low}) must be <= --tis-clip ({args.tis_clip})")
    if args.tis_upper_bound <= 0:
        _fail(f"--tis-upper-bound must be > 0, got {args.tis_upper_bound}")
    for low, high in (("tis_lower_bound", "tis_upper_bound"), ("rs_lower_bound", "rs_upper_bound")):
        low_value, high_value = getattr(args, low), getattr(args, high)
        if low_value is not None and high_value is not None and low_value >= high_value:
            _fail(f"--{low.replace('_', '-')} ({low_value}) must be < --{high.replace('_', '-')} ({high_value})")
    if args.rs_veto_threshold is not None and args.rs_veto_threshold <= 0:
        _fail(f"--rs-veto-threshold must be > 0, got {args.rs_veto_threshold}")
    _validate_distillation(args)


def _validate_distillation(args: argparse.Namespace) -> None:
    """slime's OPD rules: a teacher of the chosen kind, and no teacher flags without --use-opd."""
    if not args.use_opd:
        if args.opd_teacher_load is not None:
            _fail("--opd-teacher-load is set but --use-opd is not")
        return
    if args.opd_type is None:
        _fail("--use-opd needs --opd-type: sglang (a teacher server at --rm-url) or megatron (--opd-teacher-load)")
    if args.opd_type == "megatron" and args.opd_teacher_load is None:
        _fail("--use-opd --opd-type megatron needs --opd-teacher-load (the teacher's checkpoint)")
    if args.opd_type == "sglang":
        if args.opd_teacher_load is not None:
            _fail("--opd-teacher-load is for --opd-type megatron; with sglang the teacher is the server at --rm-url")
        if args.rm_url is None:
            _fail("--use-opd --opd-type sglang needs --rm-url (the teacher's SGLang /generate endpoint)")


def _validate_eval(args: argparse.Namespace) -> None:
    if args.eval_prompt_data is not None:
        if len(args.eval_prompt_data) == 1:  # slime names a lone eval set "aime"
            args.eval_prompt_data = ["aime", args.eval_prompt_data[0]]
        if len(args.eval_prompt_data) % 2:
            _fail(f"--eval-prompt-data takes pairs 'name path', got {len(args.eval_prompt_data)} values")
        if args.eval_config:
            _fail("--eval-prompt-data and --eval-config cannot be used together; list the datasets in the config")
    has_eval_data = bool(args.eval_prompt_data or args.eval_config)
    if args.eval_interval is not None:
        if args.eval_interval < 1:
            _fail(f"--eval-interval must be >= 1, got {args.eval_interval}")
        if not has_eval_data:
            _fail("--eval-interval needs --eval-prompt-data or --eval-config")
    if args.eval_reward_key is None:
        args.eval_reward_key = args.reward_key
    if args.eval_function_path is None:
        args.eval_function_path = args.rollout_function_path
