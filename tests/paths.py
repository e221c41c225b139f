"""The repository root and the environment of test subprocesses."""

from __future__ import annotations

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE_DIR = os.path.join(ROOT, '.cache', 'jax-compile')
BASE_XLA_FLAGS = '--xla_backend_optimization_level=0'


def jax_env(devices: int | None = None, **extra: str) -> dict[str, str]:
    """``os.environ`` for a CPU-only JAX subprocess that imports from the checkout.

    Keeps the suite's compilation cache and XLA flags (tests/conftest.py, ``BASE_XLA_FLAGS``);
    ``devices`` adds ``--xla_force_host_platform_device_count`` (left out: the process sets
    its own count).
    """
    flags = [f for f in os.environ.get('XLA_FLAGS', '').split()
             if not f.startswith('--xla_force_host_platform_device_count')]
    flags += [f for f in BASE_XLA_FLAGS.split() if f not in flags]
    if devices is not None:
        flags.append(f'--xla_force_host_platform_device_count={devices}')
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu', **extra)
    env['XLA_FLAGS'] = ' '.join(flags)
    return env
