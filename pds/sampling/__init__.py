"""Sampling: time grids, solvers (one file each, registered by name), the scan and while
loops that run them, and the sharded, compiled sampler.

May import ``pds.runtime``, ``pds.storage`` and ``pds.method``."""
