"""Suite-wide JAX settings, applied before any test touches a JAX backend.

Compilation dominates this suite on CPU (a tiny NCSN++ train step compiles in ~35 s and runs
in ~0.5 s), and many tests compile the same programs, often in subprocesses. One persistent
compilation cache serves the session and every subprocess it starts (``.cache/jax-compile``
in the checkout, ignored by git: a fresh clone starts cold), and programs compile with
XLA:CPU's backend (LLVM) optimisation level 0, which halves the compile time of a ``main.py``
run and cuts the fast target by a quarter. Subprocesses inherit both through
``tests.paths.jax_env``. In this process level 0 comes from ``jax_disable_most_optimizations``,
which is read at each compilation, so tests whose time goes into running compiled code (long
Monte Carlo runs, exact moments at 256 x 256) carry ``@pytest.mark.optimized`` and compile
with full optimisation. Neither setting changes what a computation means; tests that assert
bit-identity compare runs compiled under the same settings.
"""

import os

import pytest

from tests.paths import CACHE_DIR

os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', CACHE_DIR)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.3')

import jax

jax.config.update('jax_compilation_cache_dir', os.environ['JAX_COMPILATION_CACHE_DIR'])
jax.config.update('jax_persistent_cache_min_compile_time_secs',
                  float(os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS']))


@pytest.fixture(autouse=True)
def _optimisation_level(request):
    """Most XLA optimisations off, unless the test is marked ``optimized``."""
    jax.config.update('jax_disable_most_optimizations',
                      request.node.get_closest_marker('optimized') is None)
    yield
