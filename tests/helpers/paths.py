"""The repository root and the environment of test subprocesses."""

from __future__ import annotations

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE_DIR = os.path.join(ROOT, '.cache', 'jax-compile')
# XLA:CPU's legacy loop emitters compile about a third faster than its fusion emitters (the
# default); what a program computes is the same, but two programs that are equal in exact
# arithmetic (1 and 4 devices, EDM churn 0 and Heun) may fuse into different float orders, so
# the tests that assert such bit-identity run with the default codegen (DEFAULT_CODEGEN).
LEGACY_EMITTERS = '--xla_cpu_use_fusion_emitters=false'
BASE_XLA_FLAGS = f'--xla_backend_optimization_level=0 {LEGACY_EMITTERS}'
DEFAULT_CODEGEN = 'PDS_TEST_DEFAULT_CODEGEN'  # set (to 1) in a process that must not use it


def suite_xla_flags(flags: str, default_codegen: bool = False) -> str:
    """``flags`` plus ``BASE_XLA_FLAGS`` (less ``LEGACY_EMITTERS`` for ``default_codegen``),
    without a device count."""
    kept = [f for f in flags.split() if f != LEGACY_EMITTERS
            and not f.startswith('--xla_force_host_platform_device_count')]
    return ' '.join(kept + [f for f in BASE_XLA_FLAGS.split() if f not in kept
                            and not (default_codegen and f == LEGACY_EMITTERS)])


def jax_env(devices: int | None = None, default_codegen: bool = False,
            **extra: str) -> dict[str, str]:
    """``os.environ`` for a CPU-only JAX subprocess that imports from the checkout.

    Keeps the suite's compilation cache and XLA flags (tests/conftest.py, ``BASE_XLA_FLAGS``;
    XLA:CPU's default codegen with ``default_codegen``); ``devices`` adds
    ``--xla_force_host_platform_device_count`` (left out: the process sets its own count).
    """
    flags = suite_xla_flags(os.environ.get('XLA_FLAGS', ''), default_codegen).split()
    if devices is not None:
        flags.append(f'--xla_force_host_platform_device_count={devices}')
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu', **extra)
    env['XLA_FLAGS'] = ' '.join(flags)
    env.pop(DEFAULT_CODEGEN, None)
    if default_codegen:
        env[DEFAULT_CODEGEN] = '1'
    return env
