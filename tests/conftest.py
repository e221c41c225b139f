"""Suite-wide JAX settings, applied before any test touches a JAX backend.

Compilation dominates this suite on CPU (a tiny NCSN++ train step compiles in ~35 s and runs
in ~0.5 s), and many tests compile the same programs, often in subprocesses. One persistent
compilation cache serves the session and every subprocess it starts (``.cache/jax-compile``
in the checkout, ignored by git: a fresh clone starts cold), and every process compiles
with XLA:CPU's backend (LLVM) optimisation level 0, which halves the compile time of a
``main.py`` run and cuts the fast target by a quarter. Both change no computed value's
meaning; tests that assert bit-identity compare runs compiled under the same flags.
Subprocesses inherit both through ``tests.paths.jax_env``.
"""

import os

from tests.paths import BASE_XLA_FLAGS, CACHE_DIR

os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', CACHE_DIR)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.3')
if 'xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = f'{os.environ.get("XLA_FLAGS", "")} {BASE_XLA_FLAGS}'.strip()

import jax

jax.config.update('jax_compilation_cache_dir', os.environ['JAX_COMPILATION_CACHE_DIR'])
jax.config.update('jax_persistent_cache_min_compile_time_secs',
                  float(os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS']))
