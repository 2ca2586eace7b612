"""slime-rewards-text's entry module: registers its reward functions with slime and nothing else."""
