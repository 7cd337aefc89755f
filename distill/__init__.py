"""The top floor (torch): model families, training data, losses, trainer and student search."""
