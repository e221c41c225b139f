"""Run modes (``main.py --mode=...``), one module each, and the experiment that a config
assembles (SDE, time grid, score model, preconditioner). May import every other package."""
