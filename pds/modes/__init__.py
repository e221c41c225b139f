"""Run modes (``main.py --mode=...``), one module each: a mode parses its config fields,
calls the library (``pds.experiment``, ``pds.quality`` and the packages before them) and
writes its outputs. No module outside this package imports a mode module: main.py, the
benchmarks and the tests run a mode through this registry (:func:`run_mode`). May import
every other package."""

from __future__ import annotations

import importlib
from typing import Any

# mode name -> module; imported on first use, so that main.py checks its flags and config
# before jax and the modes load
MODES = {
    'sample': 'pds.modes.sample',
    'bench': 'pds.modes.bench',
    'convert': 'pds.modes.convert',
    'train': 'pds.modes.train',
    'stats': 'pds.modes.stats',
    'eval': 'pds.modes.eval',
    'fid': 'pds.modes.fid',
    'tune': 'pds.modes.tune',
    'likelihood': 'pds.modes.likelihood',
}


def mode_module(name: str):
    """The module of mode ``name`` (a key of :data:`MODES`)."""
    return importlib.import_module(MODES[name])


def run_mode(name: str, config, workdir: str, overwrite: bool = False, **extra: Any) -> Any:
    """Run mode ``name`` as ``main.py --mode=name`` does (after main.py's flag and config
    checks), returning what the mode returns; ``extra`` is ``source`` for the modes that
    take one."""
    return mode_module(name).run(config, workdir, overwrite=overwrite, **extra)
