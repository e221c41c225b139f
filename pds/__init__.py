"""Preconditioned Diffusion Sampling: SDEs, preconditioner, samplers and run modes."""
