"""Preconditioned Diffusion Sampling (Ma et al., ECCV 2022) and the samplers it is compared with.

Subpackages, lowest first; a package may import only from the ones listed before it (and from
``models`` and ``evaluation``, which import nothing from ``pds``). ``tests/test_layout.py``
enforces the order.

- ``runtime``   errors, the device mesh, multi-process plumbing, progress bars
- ``storage``   atomic outputs, checkpoint stores, checkpoint importers, summaries
- ``method``    the mathematics: SDEs, the score wrapper, the PDS preconditioner and its masks
- ``sampling``  time grids, solvers (predictor-corrector and others), loops, the sharded sampler
- ``analytic``  exact-score targets (Gaussian fields) and their exact metrics
- ``data``      input pipelines
- ``training``  losses, the sharded training step
- ``modes``     the run modes of ``main.py`` and the experiment assembled from a config
"""
