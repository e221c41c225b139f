"""Training: score_sde losses, the optimizer and the sharded training step.

May import the packages before it in the layering (tests/test_layout.py: runtime, storage,
method, sampling, analytic, data), never ``pds.experiment``, ``pds.quality`` or ``pds.modes``."""
