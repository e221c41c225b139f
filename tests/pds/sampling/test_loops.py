"""The solver API: loops, NFE counting, the while loop's per-example stop, probability-flow
Euler's order, and the rule that keeps a preconditioner out of ODE drifts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.analytic import field_16
from pds.analytic.gaussian_field import GaussianField, exact_score_fn
from pds.method.precondition import Identity
from pds.method.sde import VESDE
from pds.runtime.errors import ConfigError
from pds.runtime.mesh import data_mesh
from pds.sampling.context import Context
from pds.sampling.grid import time_grid
from pds.sampling.loops import scan_loop, while_loop
from pds.sampling.noise import example_keys
from pds.sampling.pc import PredictorCorrector
from pds.sampling.pf_euler import ProbabilityFlowEuler
from pds.sampling.sampler import build_sampler
from pds.sampling.solver import solver_from_config, solver_names
from tests.helpers.variable_steps import VariableSteps

SHAPE = (8, 8, 3)
FIELD = GaussianField()
SDE = VESDE(0.01, 20.0, 12)


def context(b: int = 4, seed: int = 0) -> Context:
    score = exact_score_fn(SDE, FIELD.variables(8, 8))
    return Context(SDE, score, Identity(), example_keys(jnp.uint32(seed), jnp.arange(b)), SHAPE,
                   jnp.mean, jnp.any)


def prior(b: int = 4) -> jax.Array:
    return 20.0 * jax.random.normal(jax.random.key(1), (b, *SHAPE))


@pytest.mark.parametrize('solver', [PredictorCorrector(), PredictorCorrector(corrector='ald'),
                                    ProbabilityFlowEuler()])
def test_while_loop_without_stop_equals_scan(solver):
    grid = time_grid(SDE.N, 1e-3)
    ctx, x = context(), prior()
    a = jax.jit(lambda x: scan_loop(solver, ctx, grid, x))(x)
    b = jax.jit(lambda x: while_loop(solver, ctx, x, grid.num_steps, grid))(x)
    for got, want in zip(a, b, strict=True):  # x_0, nfe and the non-finite flags
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(a.nonfinite_at, -1)


@pytest.mark.parametrize('solver, per_step', [
    (PredictorCorrector(), 2),
    (PredictorCorrector(n_steps_each=3), 4),
    (PredictorCorrector(corrector='none'), 1),
    (PredictorCorrector(predictor='none', corrector='ald', n_steps_each=2), 2),
    (PredictorCorrector(predictor='none', corrector='none'), 0),
    (ProbabilityFlowEuler(), 1),
])
def test_loop_counts_score_evaluations_per_example(solver, per_step):
    grid = time_grid(5, 1e-3)
    nfe = jax.jit(lambda x: scan_loop(solver, context(), grid, x))(prior()).nfe
    np.testing.assert_array_equal(nfe, np.full(4, 5 * per_step))


def test_while_loop_stops_each_example_at_its_own_step_count():
    solver, ctx, x = VariableSteps(), context(6), prior(6)
    out, nfe, _, steps = jax.jit(lambda x: while_loop(solver, ctx, x, 10))(x)
    target = np.asarray(solver.target(x))
    assert len(set(target.tolist())) > 1  # the examples really differ
    np.testing.assert_array_equal(nfe, target)
    np.testing.assert_array_equal(steps, target)  # one evaluation per attempted step
    # example b's result is its own k-step recursion, whatever the others do
    for b in range(6):
        y = x[b:b + 1]
        for _ in range(target[b]):
            y = y + solver.h * ctx.score_fn(y, jnp.full((1,), solver.t))
        np.testing.assert_allclose(out[b:b + 1], y, rtol=1e-6, atol=1e-6 * float(jnp.abs(y).max()))
    # a global stop: no example took more steps than the largest target
    assert int(nfe.max()) == int(target.max())


def test_sampler_runs_a_while_loop_solver_and_reports_nfe():
    s = build_sampler(SDE, time_grid(SDE.N, 1e-3), exact_score_fn, SHAPE, 4, data_mesh(),
                      VariableSteps())
    x, nfe, _, steps = s.run(FIELD.variables(8, 8), Identity(), seed=0)
    assert x.shape == (4, *SHAPE) and set(np.asarray(nfe).tolist()) <= {2, 3, 4}
    np.testing.assert_array_equal(steps, nfe)


def test_probability_flow_euler_is_first_order():
    """Errors against a fine-grid solution of the same ODE from the same prior draw halve
    when the number of steps doubles (Euler's global error is O(h))."""
    sde = VESDE(0.01, 20.0, 1000)
    score = exact_score_fn(sde, FIELD.variables(8, 8))
    ctx = Context(sde, score, Identity(), example_keys(jnp.uint32(0), jnp.arange(2)), SHAPE,
                  jnp.mean, jnp.any)
    x = 20.0 * jax.random.normal(jax.random.key(2), (2, *SHAPE))
    eps = 0.05  # stop early: the ODE is stiff near t = 0 for sigma_min = 0.01

    def solve(n):  # n - 1 steps from 1 to eps, then the same last step from eps to 0
        grid = time_grid(n, eps)
        return np.asarray(jax.jit(lambda x: scan_loop(ProbabilityFlowEuler(), ctx, grid,
                                                      x))(x)[0], np.float64)

    ref = solve(4096)
    errs = [np.abs(solve(n) - ref).max() for n in (64, 128, 256)]
    ratios = [errs[0] / errs[1], errs[1] / errs[2]]
    assert all(1.6 < r < 2.4 for r in ratios), (errs, ratios)


def test_solver_registry_and_ode_rule():
    assert {'pc', 'pf_euler'} <= set(solver_names())
    config = field_16.get_config()
    config.sampling.method = 'pf_euler'
    with pytest.raises(ConfigError, match=r"sampling\.precondition='pds'"):
        solver_from_config(config, SDE)
    config.sampling.precondition = 'none'
    assert isinstance(solver_from_config(config, SDE), ProbabilityFlowEuler)
    config.sampling.method = 'heun'
    with pytest.raises(ConfigError, match=r"sampling\.method='heun'"):
        solver_from_config(config, SDE)


class Overflow:
    """x <- x * 1e20 for examples 0 and 2 (20 -> 2e21 -> inf in float32 at the second step),
    x unchanged for the others."""

    def init(self, ctx, x):
        return {'x': x}

    def step(self, ctx, state, interval):
        grow = jnp.asarray([1e20, 1.0, 1e20, 1.0], jnp.float32)[:, None, None, None]
        return {'x': state['x'] * grow}

    def output(self, ctx, state):
        return state['x']


@pytest.mark.parametrize('loop', ['scan', 'while'])
def test_loops_flag_the_first_non_finite_iteration_per_example(loop):
    grid = time_grid(5, 1e-3)
    x = jnp.full((4, *SHAPE), 20.0)
    if loop == 'scan':
        out = jax.jit(lambda x: scan_loop(Overflow(), context(), grid, x))(x)
    else:
        out = jax.jit(lambda x: while_loop(Overflow(), context(), x, 5, grid))(x)
    np.testing.assert_array_equal(out.nonfinite_at, [1, -1, 1, -1])
    assert np.isinf(np.asarray(out.x[0])).all() and np.all(np.asarray(out.x[1]) == 20.0)
