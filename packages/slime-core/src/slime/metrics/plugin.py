"""Registers slime-core's always-on JSONL metric sink, the way any plugin registers a sink."""

from slime.hookspecs import hookimpl
from slime.metrics.sinks import JsonlSink


@hookimpl
def slime_register_metric_sinks(register) -> None:
    register("jsonl", JsonlSink)
