"""A sampling experiment from a config (SDE and grid, score model and its variables,
preconditioner, prior, the exact target) and its sampling in rounds; the checks of a whole
config that main.py runs first. May import every package before it, never ``pds.modes``
or ``pds.quality``."""
