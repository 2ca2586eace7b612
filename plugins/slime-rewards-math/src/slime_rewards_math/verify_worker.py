"""An answer-check worker process (see ``symbolic``): reads JSON requests from stdin, one per line, and writes one JSON
reply per line. Run as ``python -m slime_rewards_math.verify_worker``."""

import json
import os
import sys


def verify_answers(gold: str, prediction: str, timeout_s: int) -> bool:
    """math-verify's verdict on two answers (LaTeX or plain expressions); its timeouts use SIGALRM, so this must run
    in a main thread, as it does here."""
    from math_verify import parse, verify

    gold_parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=timeout_s)
    prediction_parsed = parse(f"\\boxed{{{prediction}}}", parsing_timeout=timeout_s)
    if not gold_parsed or not prediction_parsed:
        return False
    return bool(verify(gold_parsed, prediction_parsed, timeout_seconds=timeout_s))


def main() -> None:
    # Replies own the real stdout; anything a library prints goes to stderr instead of corrupting them.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr

    import math_verify  # noqa: F401  (the slow import happens before "ready", outside any check's deadline)

    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = {"equal": verify_answers(request["gold"], request["prediction"], request["timeout_s"])}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
