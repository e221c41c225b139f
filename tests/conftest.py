"""Suite-wide JAX settings, applied before any test touches a JAX backend.

Compilation dominates this suite on CPU (a tiny NCSN++ train step compiles in ~35 s and runs
in ~0.5 s), and many tests compile the same programs, often in subprocesses. One persistent
compilation cache serves the session and every subprocess it starts (``.cache/jax-compile``
in the checkout, ignored by git: a fresh clone starts cold), and programs compile with
XLA:CPU's backend (LLVM) optimisation level 0, which halves the compile time of a ``main.py``
run and cuts the fast target by a quarter. Subprocesses inherit both through
``tests.helpers.paths.jax_env``. In this process level 0 comes from
``jax_disable_most_optimizations``, which is read at each compilation, so tests whose time goes
into running compiled code (long Monte Carlo runs, exact moments at 256 x 256) carry
``@pytest.mark.optimized`` and compile with full optimisation. The suite (this process and,
through ``tests.helpers.paths.jax_env``, its subprocesses) also compiles with XLA:CPU's legacy
loop emitters, about a third faster to compile than the default fusion emitters. Neither
setting changes what a computation means; tests that assert bit-identity compare runs compiled
under the same settings, and those whose two programs are only equal in exact arithmetic (1 vs
4 devices, EDM churn 0 vs Heun) run with the default codegen, as a user's runs do: subprocesses
through ``jax_env(default_codegen=True)``, tests in this process through
``@pytest.mark.default_codegen`` (the test runs in a child pytest).
"""

import os
import subprocess
import sys

import pytest

from pds.runtime.python_gc import relax_collector
from tests.helpers.paths import CACHE_DIR, DEFAULT_CODEGEN, LEGACY_EMITTERS, ROOT

if os.environ.get(DEFAULT_CODEGEN) != '1':  # read when the CPU backend starts, not before
    os.environ['XLA_FLAGS'] = f'{os.environ.get("XLA_FLAGS", "")} {LEGACY_EMITTERS}'.strip()

os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', CACHE_DIR)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.3')

import jax

jax.config.update('jax_compilation_cache_dir', os.environ['JAX_COMPILATION_CACHE_DIR'])
jax.config.update('jax_persistent_cache_min_compile_time_secs',
                  float(os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS']))
jax.config.update('jax_disable_most_optimizations', True)  # per test: _optimisation_level
relax_collector()  # as main.py does: tracing is a large part of this suite's time


def pytest_pyfunc_call(pyfuncitem):
    """A test marked ``default_codegen`` runs in a child pytest whose XLA:CPU uses its default
    (fusion-emitter) codegen, as a user's does (tests/helpers/paths.py, LEGACY_EMITTERS)."""
    if (pyfuncitem.get_closest_marker('default_codegen') is None
            or os.environ.get(DEFAULT_CODEGEN) == '1'):
        return None
    env = dict(os.environ, **{DEFAULT_CODEGEN: '1'})
    env['XLA_FLAGS'] = ' '.join(f for f in env.get('XLA_FLAGS', '').split()
                                if f != LEGACY_EMITTERS)
    env.pop('PYTEST_XDIST_WORKER', None)
    proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                           pyfuncitem.nodeid], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    return True


@pytest.fixture(autouse=True)
def _optimisation_level(request):
    """Most XLA optimisations off, unless the test is marked ``optimized``; off again after
    it, so that a module- or session-scoped fixture (set up before this one, whichever test
    first needs it) compiles as the suite's subprocesses do, whatever test ran before."""
    jax.config.update('jax_disable_most_optimizations',
                      request.node.get_closest_marker('optimized') is None)
    yield
    jax.config.update('jax_disable_most_optimizations', True)
