"""slime-rewards-math's entry module: registers its reward functions with slime and nothing else."""
