"""Storage: atomic file outputs, claiming and replacing an earlier run's outputs
(``replace``), one reader per input file kind (``readers``), the sampling and training
checkpoint stores, importers of released score_sde checkpoints, TensorBoard summaries.

May import ``pds.runtime``, ``models`` (to check a stored tree against its network) and
``evaluation`` (the formats of FID statistics and Inception weights)."""
