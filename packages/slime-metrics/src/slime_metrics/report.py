"""``slime report RUN_DIR``: PNG plots and an HTML page from a run's ``metrics.jsonl``, for people without W&B."""

import argparse
import html
import json
import re
from collections.abc import Callable
from pathlib import Path

from slime.errors import SlimeError
from slime.metrics.sinks import METRICS_FILE
from slime.metrics.steps import STEP_KEYS
from slime_metrics.plot import line_plot

# metric -> its step key -> value at that step (a later line for the same step wins, e.g. after a resume)
Series = dict[str, dict[str, dict[float, float]]]


def read_series(path: Path) -> Series:
    """Every metric of a ``metrics.jsonl``, by the step key its line was logged against."""
    series: Series = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SlimeError(f"{path} line {number}: invalid JSON ({exc.msg})") from None
            step_keys = [key for key in STEP_KEYS if key in record]
            if len(step_keys) != 1:
                raise SlimeError(f"{path} line {number}: expected one step key of {', '.join(STEP_KEYS)}")
            step_key = step_keys[0]
            step = record[step_key]
            for key, value in record.items():
                if key != step_key and isinstance(value, int | float):
                    series.setdefault(key, {}).setdefault(step_key, {})[step] = value
    return series


def _is_eval_score(key: str) -> bool:
    return bool(re.fullmatch(r"eval/[^/]+", key)) and "-truncated_ratio" not in key and "-pass@" not in key


# (file name, title, which metrics): one PNG each, drawn only when some metric matches.
PLOTS: list[tuple[str, str, Callable[[str], bool]]] = [
    ("reward.png", "Reward", lambda k: k in ("rollout/raw_reward", "rollout/rewards")),
    ("eval.png", "Eval scores", _is_eval_score),
    ("pass_at_k.png", "pass@k", lambda k: k.startswith("passrate/pass@") or bool(re.fullmatch(r"eval/.+-pass@\d+", k))),
    ("response_length.png", "Response length (trained tokens)", lambda k: k.startswith("rollout/response_len/")),
    ("multi_turn.png", "Rounds per sample", lambda k: k.startswith("multi_turn/multi_turn_metric/round_number")),
    ("kl.png", "KL", lambda k: k.split("/")[0] in ("train", "rollout") and "kl" in k.split("/")[-1]),
    ("loss.png", "Training loss", lambda k: k in ("train/loss", "train/pg_loss", "train/entropy_loss")),
    ("timings.png", "Timings (s)", lambda k: k.startswith("perf/") and k.endswith("_time")),
]


def write_report(run_dir: Path, out_dir: Path | None = None) -> Path:
    """Write the plots and ``index.html`` (default: ``RUN_DIR/report``); returns the HTML page's path."""
    metrics_file = run_dir if run_dir.is_file() else run_dir / METRICS_FILE
    if not metrics_file.is_file():
        raise SlimeError(f"{metrics_file}: no such file (a run writes it to its --output-dir)")
    series = read_series(metrics_file)
    out_dir = out_dir or metrics_file.parent / "report"
    out_dir.mkdir(parents=True, exist_ok=True)

    images = []
    for file_name, title, wanted in PLOTS:
        keys = sorted(key for key in series if wanted(key))
        if not keys:
            continue
        lines = {key: [point for points in series[key].values() for point in points.items()] for key in keys}
        step_keys = sorted({step_key for key in keys for step_key in series[key]})
        line_plot(out_dir / file_name, title, lines, ", ".join(step_keys))
        images.append((file_name, title))

    page = out_dir / "index.html"
    page.write_text(_html(metrics_file, series, images), encoding="utf-8")
    return page


def _html(metrics_file: Path, series: Series, images: list[tuple[str, str]]) -> str:
    rows = []
    for key in sorted(series):
        for step_key, points in sorted(series[key].items()):
            last = max(points)
            rows.append(
                f"<tr><td>{html.escape(key)}</td><td>{html.escape(step_key)}</td><td>{len(points)}</td>"
                f"<td>{last:g}</td><td>{points[last]:.6g}</td></tr>"
            )
    figures = "\n".join(
        f'<figure><img src="{html.escape(name)}" alt="{html.escape(title)}"></figure>' for name, title in images
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>slime report: {html.escape(str(metrics_file.parent))}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:2px 10px;text-align:left}}
tr:nth-child(even){{background:#f4f4f4}} img{{max-width:100%}}</style></head>
<body><h1>slime report</h1><p>From <code>{html.escape(str(metrics_file))}</code>.</p>
{figures}
<h2>Last values</h2>
<table><tr><th>metric</th><th>step key</th><th>points</th><th>last step</th><th>last value</th></tr>
{"".join(rows)}
</table></body></html>
"""


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slime report", description="Plot a run's metrics.jsonl into PNGs and HTML.")
    parser.add_argument("run_dir", type=Path, help="the run's --output-dir (or its metrics.jsonl)")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: RUN_DIR/report)")
    args = parser.parse_args(argv)
    page = write_report(args.run_dir, args.out)
    print(f"wrote {page}")
    return 0
