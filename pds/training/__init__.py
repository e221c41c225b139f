"""Training: score_sde losses, the optimizer and the sharded training step.

May import every package above it except ``pds.modes``."""
