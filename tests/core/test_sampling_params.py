"""The sampling parameters the engine receives, for rollouts and for each eval dataset."""

from slime.config.arguments import parse_args
from slime.eval.datasets import eval_dataset_configs
from slime.rollout.sampling import rollout_sampling_params

BASE = ["--rollout-batch-size", "4", "--n-samples-per-prompt", "2", "--rollout-max-response-len", "64"]


def test_rollouts_send_the_rollout_flags_in_the_engines_names():
    args = parse_args([*BASE, "--rollout-temperature", "0.8", "--rollout-stop", "</answer>", "--rollout-top-k", "5"])
    assert rollout_sampling_params(args) == {
        "temperature": 0.8,
        "top_p": 1.0,
        "top_k": 5,
        "max_new_tokens": 64,
        "stop": ["</answer>"],
        "stop_token_ids": None,
        "skip_special_tokens": False,
        "no_stop_trim": True,
        "spaces_between_special_tokens": False,
    }


def test_an_eval_dataset_sends_its_own_settings_and_the_rollouts_for_the_rest():
    args = parse_args(
        [
            *BASE, "--rollout-temperature", "0.8", "--rollout-stop-token-ids", "7", "--rollout-skip-special-tokens",
            "--eval-prompt-data", "aime", "aime.jsonl", "--eval-top-p", "0.5", "--eval-max-response-len", "128",
        ]
    )  # fmt: skip
    [aime] = eval_dataset_configs(args)
    assert aime.sampling_params(args) == {
        "temperature": 0.8,
        "top_p": 0.5,
        "top_k": -1,
        "max_new_tokens": 128,
        "stop": None,
        "stop_token_ids": [7],
        "skip_special_tokens": True,
        "no_stop_trim": True,
        "spaces_between_special_tokens": False,
    }
