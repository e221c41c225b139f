"""A Langevin corrector after an ODE solver's step (``sampling.ode_corrector``,
pds/sampling/with_corrector.py): 'none' builds the plain solver; the ODE step, x_T and EDM's
churn never see the preconditioner, the corrector does; its noise slots follow the inner
step's; the NFE count adds its evaluations (checked against the score calls that run); and
the configuration rules. The 1-vs-4-device check is in device_invariance_check.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pds.analytic.gaussian_field import GaussianField, exact_score_fn
from pds.experiment.assemble import experiment_from_config
from pds.method import masks
from pds.method.pds_preconditioner import make_preconditioner
from pds.method.precondition import Identity
from pds.method.sde import VESDE, VPSDE
from pds.runtime.errors import ConfigError
from pds.runtime.mesh import data_mesh, replicate
from pds.sampling.context import Context
from pds.sampling.dpm_solver import DPMSolverPP
from pds.sampling.edm import EDMHeun, EDMStochastic
from pds.sampling.grid import Interval, noise_level_grid, time_grid
from pds.sampling.noise import example_keys
from pds.sampling.pf_euler import ProbabilityFlowEuler
from pds.sampling.sampler import build_sampler
from pds.sampling.solver import corrected_methods, solver_from_config
from pds.sampling.with_corrector import CORRECTOR_SLOT, WithCorrector
from tests.pds.sampling.test_ode_solvers import ode_config

H, W, C = 8, 8, 2
FIELD = GaussianField(mean=(0.5, 0.4), variance=(0.04, 0.03))


def pds_precond():
    x = FIELD.sample(np.random.default_rng(0), 64, H, W)
    return make_preconditioner(masks.frequency_gain(masks.frequency_statistic(x), 5.0), None)


def run(solver, precond, sde=None, grid=None, batch=8, score_builder=exact_score_fn, seed=3):
    sde = sde or VESDE(0.01, 20.0, 6)
    grid = grid or noise_level_grid(sde, 6, 1e-3, 'karras')
    mesh = data_mesh(jax.devices()[:1])
    s = build_sampler(sde, grid, score_builder, (H, W, C), batch, mesh, solver)
    out = s.run(replicate(FIELD.variables(H, W), mesh), replicate(precond, mesh), seed=seed)
    return [np.asarray(a) for a in out]


@pytest.mark.parametrize('method', corrected_methods())
def test_no_corrector_builds_the_plain_solver(method):
    """'none' (and a config without the field) returns the solver itself: runs are those of
    the solver without the wrapper, bit for bit."""
    config = ode_config(method, 4)
    plain = solver_from_config(config, VESDE())
    config.sampling.ode_corrector = 'none'
    assert solver_from_config(config, VESDE()) == plain
    assert not isinstance(plain, WithCorrector)
    config.sampling.ode_corrector = 'langevin'
    config.sampling.precondition = 'pds'
    wrapped = solver_from_config(config, VESDE())
    assert isinstance(wrapped, WithCorrector) and wrapped.inner == plain
    assert wrapped.summary()['ode_corrector'] == 'langevin'


class Spy:
    """A solver that records the preconditioner each of its calls sees (while tracing) and
    returns x unchanged: 0 score evaluations."""

    def __init__(self):
        self.seen = []

    def init(self, ctx, x):
        self.seen.append(type(ctx.precond))
        return x

    def step(self, ctx, x, interval):
        self.seen.append(type(ctx.precond))
        return x

    def step_nfe(self, interval):
        return jnp.zeros((), jnp.int32)

    def output(self, ctx, x):
        self.seen.append(type(ctx.precond))
        return x


@pytest.mark.default_codegen
def test_the_ode_step_and_the_prior_see_no_preconditioner():
    """With PDS: every call of the inner solver sees M = I, and on a one-step grid (its one
    interval ends at the data: no corrector) the output is x_T of the plain sampler, bit for
    bit (x_T not coloured)."""
    spy = Spy()
    precond = pds_precond()
    one = time_grid(1, 1e-3)
    x_pds = run(WithCorrector(spy, 'langevin', 0.16, 2, 1e-3), precond, grid=one)[0]
    assert spy.seen and set(spy.seen) == {Identity}, spy.seen
    x_plain = run(Spy(), Identity(), grid=one)[0]
    assert np.array_equal(x_pds, x_plain)
    assert not np.array_equal(run(Spy(), precond, grid=one)[0], x_plain)  # M z differs


def test_the_corrector_gets_the_preconditioner():
    """On 6 steps the corrector moves x (its output differs from the plain solver's) and with
    PDS it moves it differently than without; each output finite."""
    plain = run(EDMHeun(), Identity())[0]
    with_none = run(WithCorrector(EDMHeun(), 'langevin', 0.16, 1, 1e-3), Identity())[0]
    with_pds = run(WithCorrector(EDMHeun(), 'langevin', 0.16, 1, 1e-3), pds_precond())[0]
    assert np.all(np.isfinite(with_none)) and np.all(np.isfinite(with_pds))
    assert not np.array_equal(plain, with_none) and not np.array_equal(with_none, with_pds)


def test_noise_slots_of_the_churn_and_the_corrector():
    """EDM's churn draws slot 0 of the iteration, the corrector's k-th step slot 1 + k."""
    slots = []

    def noise_fn(interval, slot):
        slots.append(slot)
        return jnp.zeros((2, H, W, C), jnp.float32)

    sde = VESDE(0.01, 20.0, 6)
    ctx = Context(sde, exact_score_fn(sde, FIELD.variables(H, W)), pds_precond(),
                  example_keys(jnp.uint32(0), jnp.arange(2)), (H, W, C), jnp.mean,
                  lambda v: jnp.any(v), noise_fn)
    solver = WithCorrector(EDMStochastic(6, s_churn=40.0), 'langevin', 0.16, 3, 1e-3)
    interval = Interval(jnp.float32(0.5), jnp.float32(0.4), jnp.int32(3), jnp.int32(1))
    solver.step(ctx, solver.init(ctx, jnp.ones((2, H, W, C))), interval)
    assert sorted(slots) == [0, CORRECTOR_SLOT, CORRECTOR_SLOT + 1, CORRECTOR_SLOT + 2], slots


@pytest.mark.parametrize('inner,n_steps_each,want', [
    (EDMHeun(), 1, 2 * 24 - 1 + 23),  # Heun 2N - 1, + 1 corrector step after each of N - 1
    (DPMSolverPP(3), 2, 24 + 1 + 2 * 23),  # 3M: N + 1 (the trapezoid first step)
    (ProbabilityFlowEuler(), 1, 24 + 23)])
def test_nfe_counts_the_corrector(inner, n_steps_each, want):
    """The loop's count (step_nfe) is the number of score calls that run, counted by a host
    callback in the score function (VP: the corrector's a_t from the ladder index)."""
    calls = []

    def counting(sde, variables):
        score = exact_score_fn(sde, variables)

        def f(x, t):
            jax.debug.callback(lambda v: calls.append(1), t[0])
            return score(x, t)

        return f

    sde = VPSDE(N=24)  # N levels > beta_max: the ladder's alphas lie in (0, 1)
    grid = noise_level_grid(sde, 24, 1e-3, 'logsnr')
    solver = WithCorrector(inner, 'ald', 0.16, n_steps_each, 1e-3)
    x, nfe, bad, steps = run(solver, Identity(), sde, grid, batch=2, score_builder=counting)
    jax.effects_barrier()
    assert np.all(nfe == want), nfe
    assert len(calls) == want, len(calls)
    assert np.all(bad < 0) and np.all(np.isfinite(x)) and np.all(steps == 24)


def test_ladder_index_of_t_next():
    """The corrector's ladder index of a grid time is the grid's own index of that time."""
    for sde, kind in ((VPSDE(N=30), 'ladder'), (VPSDE(N=30), 'karras'), (VPSDE(N=30), 'logsnr')):
        grid = noise_level_grid(sde, 30, 1e-3, kind)
        solver = WithCorrector(EDMHeun(), 'ald', 0.16, 1, 1e-3)
        ctx = Context(sde, None, Identity(), jnp.zeros((1,)), (H, W, C), jnp.mean, jnp.any)
        got = [int(solver.ladder_index(ctx, jnp.float32(t))) for t in grid.t]
        assert got == grid.index.tolist(), (kind, got, grid.index.tolist())


@pytest.mark.parametrize('method', corrected_methods())
def test_pds_goes_to_the_corrector_only(method):
    config = ode_config(method, 4)
    config.sampling.precondition = 'pds'
    with pytest.raises(ConfigError, match=r"sampling.precondition.*sampling.ode_corrector"):
        solver_from_config(config, VESDE())
    config.sampling.ode_corrector = 'ald'
    assert isinstance(solver_from_config(config, VESDE()), WithCorrector)


@pytest.mark.parametrize('method', ['pc', 'dopri5', 'adaptive_sde'])
def test_only_fixed_step_ode_solvers_take_a_corrector(method):
    config = ode_config('edm_heun', 4)
    config.sampling.method = method
    config.sampling.ode_corrector = 'langevin'
    with pytest.raises(ConfigError, match=rf"sampling.ode_corrector='langevin'.*{method}"):
        solver_from_config(config, VESDE())


@pytest.mark.parametrize('field,value,allowed', [('ode_corrector', 'hmc', 'langevin'),
                                                 ('snr', 0.0, '> 0'),
                                                 ('n_steps_each', 0, '>= 1')])
def test_bad_corrector_fields(field, value, allowed):
    config = ode_config('dpm_solver_2m', 4)
    config.sampling.ode_corrector = 'langevin'
    config.sampling[field] = value
    with pytest.raises(ConfigError, match=rf'sampling\.{field}=.*{allowed}'):
        solver_from_config(config, VESDE())


def test_population_moments_refuse_a_corrector():
    from pds.analytic.moments import check_config

    config = ode_config('edm_heun', 4)
    config.sampling.ode_corrector = 'langevin'
    with pytest.raises(ConfigError, match=r'sampling\.ode_corrector.*population'):
        check_config(config)


def test_gaussian_prior_with_pds_in_the_corrector():
    """PDS colours x_T only without an ODE corrector, so the Gaussian prior is allowed with
    one."""
    config = ode_config('dpm_solver_2m', 4, prior='gaussian')
    config.sampling.precondition = 'pds'
    with pytest.raises(ConfigError, match=r'sampling\.prior'):
        experiment_from_config(config)
    config.sampling.ode_corrector = 'langevin'
    assert experiment_from_config(config).prior_spectrum is not None
