import html

from PIL import Image
from readers import read_jsonl
from samples import rollout_samples

from slime.cli import main
from slime.metrics import finish_metrics, init_metrics, log_eval, log_perf, log_rollout, log_train_step
from slime.plugins import registry

PLOTS = ["reward", "eval", "pass_at_k", "response_length", "multi_turn", "kl", "loss", "timings"]


def write_run(args):
    init_metrics(args)
    for rollout_id in range(3):
        log_rollout(args, rollout_id, rollout_samples(), rollout_time=1.0 + rollout_id)
        log_train_step(args, rollout_id, 0, {"loss": 1.0 / (rollout_id + 1), "kl_loss": 0.01 * rollout_id})
        log_perf(args, rollout_id, {"train_wait": 0.5, "train": 2.0, "update_weights": 0.1})
        log_eval(args, rollout_id, {"math": rollout_samples()}, n_samples_per_prompt={"math": 4})
    finish_metrics()


def test_report_writes_plots_and_a_page(make_args, tmp_path, capsys):
    write_run(make_args("--log-passrate", "--log-multi-turn"))
    assert "report" in registry("commands").names()

    assert main(["report", str(tmp_path)]) == 0
    out = tmp_path / "report"
    assert capsys.readouterr().out == f"wrote {out / 'index.html'}\n"
    for name in PLOTS:
        with Image.open(out / f"{name}.png") as image:
            assert image.format == "PNG" and image.size == (1000, 480)
            assert len(image.getcolors(1 << 16)) > 2  # something is drawn besides background and frame
    page = (out / "index.html").read_text()
    for name in PLOTS:
        assert f'src="{name}.png"' in page
    # the table shows each metric's last value at its last step
    last_raw_reward = [line for line in read_jsonl(tmp_path) if "rollout/raw_reward" in line][-1]["rollout/raw_reward"]
    assert (
        f"<td>{html.escape('rollout/raw_reward')}</td><td>rollout/step</td><td>3</td><td>2</td><td>{last_raw_reward:.6g}</td>"
        in page
    )


def test_report_to_another_folder_skips_missing_plots(make_args, tmp_path):
    args = make_args()
    init_metrics(args)
    log_rollout(args, 0, rollout_samples())
    finish_metrics()
    assert main(["report", str(tmp_path / "metrics.jsonl"), "--out", str(tmp_path / "elsewhere")]) == 0
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == [
        "index.html",
        "response_length.png",
        "reward.png",
    ]


def test_report_without_metrics_is_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"slime report: error: {tmp_path / 'metrics.jsonl'}: no such file (a run writes it to its --output-dir)\n"
    )
