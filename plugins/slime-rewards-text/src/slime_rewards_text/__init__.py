"""Text rewards for slime: f1, gpqa (letter choice), random"""
