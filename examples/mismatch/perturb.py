"""Write a copy of an HF model directory with every weight perturbed: w + scale * std(w) * noise (seeded).

uv run python examples/mismatch/perturb.py <model> <out> --scale 0.1
"""

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shutil.copytree(args.model, args.out, dirs_exist_ok=True)
    generator = torch.Generator().manual_seed(args.seed)
    for path in sorted(args.model.glob("*.safetensors")):
        weights = load_file(path)
        for name, value in weights.items():
            noise = torch.randn(value.shape, generator=generator, dtype=torch.float32)
            std = value.float().std() if value.numel() > 1 else value.float().abs()
            weights[name] = (value.float() + args.scale * std * noise).to(value.dtype)
        save_file(weights, args.out / path.name, metadata={"format": "pt"})


if __name__ == "__main__":
    main()
