"""Whole-checkpoint conversion between HF and megatron formats (``slime convert hf-to-megatron|megatron-to-hf``).

Both run in one process at TP=1/PP=1: a distributed checkpoint is stored by global tensor layout, so the one written
here loads at any TP/PP size, and any one loads here. The process holds the whole model in CPU memory (or on the GPU
when there is one).
"""

from pathlib import Path


def _single_process_model(hf_dir: str | Path):
    """CPU mode where there is no GPU, a world of one process, and the model of ``hf_dir``'s config."""
    import torch

    on_cpu = not torch.cuda.is_available()
    if on_cpu:
        from slime_megatron import cpu_compat

        cpu_compat.enable()
    import socket

    import torch.distributed as dist

    from slime_megatron.hf_config import HFModelConfig
    from slime_megatron.megatron_flags import default_args
    from slime_megatron.model import build_model
    from slime_megatron.parallel import init_parallel

    if not dist.is_initialized():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        init_parallel(rank=0, world_size=1, on_cpu=on_cpu, init_method=f"tcp://127.0.0.1:{port}")
    else:
        init_parallel(rank=dist.get_rank(), world_size=dist.get_world_size(), on_cpu=on_cpu)
    hf = HFModelConfig.load(hf_dir)
    _, _, model = build_model(default_args(str(hf_dir)), hf, world_size=1, on_cpu=on_cpu)
    return hf, model


def hf_to_megatron(hf_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the HF model at ``hf_dir`` as a megatron release checkpoint (``--load`` / ``--ref-load`` start at 0)."""
    hf, model = _single_process_model(hf_dir)  # first: it enables the CPU mode before megatron's model modules load
    from slime_megatron.checkpoint import save_model_checkpoint
    from slime_megatron.hf_mapping import load_hf_weights

    load_hf_weights(model, hf, hf_dir)
    return save_model_checkpoint(out_dir, model)


def megatron_to_hf(megatron_dir: str | Path, hf_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the newest checkpoint under ``megatron_dir`` as an HF model directory.

    ``hf_dir`` is the HF model it was trained from: its config, tokenizer and other files are copied.
    """
    hf, model = _single_process_model(hf_dir)  # first: it enables the CPU mode before megatron's model modules load
    from slime.weights.disk import write_hf_checkpoint
    from slime_megatron.checkpoint import load_model_weights
    from slime_megatron.hf_mapping import gather_hf_state_dict

    load_model_weights(megatron_dir, model)
    return write_hf_checkpoint(gather_hf_state_dict(model, hf), hf_dir, out_dir)


def main(argv: list[str]) -> int:
    """convert checkpoints: hf-to-megatron HF_DIR OUT, or megatron-to-hf MEGATRON_DIR HF_DIR OUT"""
    import argparse

    parser = argparse.ArgumentParser(prog="slime convert", description="convert whole checkpoints (one process)")
    commands = parser.add_subparsers(dest="direction", required=True)
    to_megatron = commands.add_parser("hf-to-megatron", help="HF model directory -> megatron release checkpoint")
    to_megatron.add_argument("hf_dir")
    to_megatron.add_argument("out_dir")
    to_hf = commands.add_parser("megatron-to-hf", help="newest megatron checkpoint -> HF model directory")
    to_hf.add_argument("megatron_dir")
    to_hf.add_argument("hf_dir", help="the HF model it was trained from (config and tokenizer are copied)")
    to_hf.add_argument("out_dir")
    args = parser.parse_args(argv)
    if args.direction == "hf-to-megatron":
        print(hf_to_megatron(args.hf_dir, args.out_dir))
    else:
        print(megatron_to_hf(args.megatron_dir, args.hf_dir, args.out_dir))
    return 0
