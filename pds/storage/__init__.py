"""Storage: atomic file outputs, the sampling and training checkpoint stores, importers of
released score_sde checkpoints, TensorBoard summaries.

May import ``pds.runtime`` and ``models`` (to check a stored tree against its network)."""
