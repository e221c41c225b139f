"""Analytic targets: distributions whose perturbed score is exact (stationary Gaussian
fields) and the exact metrics they allow (Frechet distance in the Fourier basis).

May import ``pds.runtime``, ``pds.storage``, ``pds.method`` and ``pds.sampling``."""
