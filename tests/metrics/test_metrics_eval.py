import pytest
from samples import rollout_samples, sample

from slime.metrics.eval import eval_metrics
from slime.types import Status


def test_eval_metrics_names_and_values():
    math_samples = rollout_samples()  # 2 prompts x 4 samples; rewards 1,0,1,0 | 1,1,1,1
    # 3 prompts x 2 samples: rewards 1,0 | 0,0 | 1,1; one truncated
    code_samples = [
        sample(g, g * 2 + i, 5, r, status=Status.TRUNCATED if (g, i) == (1, 1) else Status.COMPLETED)
        for g, pair in enumerate([(1.0, 0.0), (0.0, 0.0), (1.0, 1.0)])
        for i, r in enumerate(pair)
    ]
    metrics = eval_metrics({"math": math_samples, "code": code_samples}, {"math": 4, "code": 2}, log_passrate=True)
    assert metrics["eval/math"] == 0.75
    assert metrics["eval/math-truncated_ratio"] == 0.25
    assert metrics["eval/math/truncated_ratio"] == 0.25
    assert metrics["eval/math/response_len/mean"] == 58 / 8
    assert metrics["eval/math/response_len/median"] == 9.0
    assert metrics["eval/math/response_len/max"] == 10.0
    assert metrics["eval/math/response_len/min"] == 2.0
    assert metrics["eval/math/zero_std/count_1.0"] == 1
    assert metrics["eval/math/repetition_frac"] == 1 / 8
    assert metrics["eval/math-pass@1"] == pytest.approx(0.75)
    assert metrics["eval/math-pass@2"] == pytest.approx((5 / 6 + 1) / 2)
    assert metrics["eval/math-pass@4"] == pytest.approx(1.0)
    # Each dataset uses its own n: code has pairs, so pass@1 and pass@2 only.
    assert metrics["eval/code"] == 0.5
    assert metrics["eval/code-truncated_ratio"] == pytest.approx(1 / 6)
    assert metrics["eval/code-pass@1"] == pytest.approx(0.5)
    assert metrics["eval/code-pass@2"] == pytest.approx((1 + 0 + 1) / 3)
    assert "eval/code-pass@4" not in metrics
    assert metrics["eval/code/zero_std/count_0.0"] == 1
    assert metrics["eval/code/zero_std/count_1.0"] == 1


def test_eval_pass_at_k_only_with_log_passrate_and_n_above_one():
    results = {"math": rollout_samples()}
    assert not any("pass@" in k for k in eval_metrics(results, 4))
    assert not any("pass@" in k for k in eval_metrics(results, 1, log_passrate=True))
