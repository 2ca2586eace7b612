"""Run sglang-router in this process: ``python -m slime_sglang.router_main <router flags>``.

sglang-router's own launcher (``python -m sglang_router.launch_router``) imports its Python mini load balancer,
which imports all of SGLang and torch (7+ s of CPU) before starting the Rust router. This entry starts the same
Rust router from the same ``RouterArgs`` without that import, and ends it when its parent dies.
"""

import argparse
import sys

from sglang_router.router import Router
from sglang_router.router_args import RouterArgs

from slime_sglang.parent_watch import exit_with_parent


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="slime_sglang.router_main")
    RouterArgs.add_cli_args(parser, use_router_prefix=False)
    router_args = RouterArgs.from_cli_args(parser.parse_args(argv), use_router_prefix=False)
    router_args._validate_router_args()
    exit_with_parent()
    Router.from_args(router_args).start()


if __name__ == "__main__":
    main(sys.argv[1:])
