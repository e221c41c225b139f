"""Analytic targets: distributions whose perturbed score is exact (stationary Gaussian
fields and their mixtures, registered by config name in ``targets``) and the exact metrics
they allow (Frechet distance in the Fourier basis, population moments).

May import ``pds.runtime``, ``pds.storage``, ``pds.method`` and ``pds.sampling``."""
