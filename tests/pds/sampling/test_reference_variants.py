"""``sampling.solver_variant='reference'``: DPM-Solver++(2M, 3M) and UniPC-bh2 against their
official algorithms (LuChengTHU/dpm-solver and wl-zhao/UniPC, ``multistep`` with their
defaults) written out below in numpy, independently of pds/sampling, on a Gaussian problem
whose denoiser is exact in closed form; the convergence order of both variants against the
exact flow (float64); the field's validation and its record in the solver's summary.

The problem: data x_0 ~ N(mu, diag(v)) in K channels of a (1, 1, K) image (the per-mode layout
of pds.analytic.moments, whose exact score ``mode_score_fn`` our solvers evaluate), so that
E[x_0 | x-hat; sigma] = mu + v / (v + sigma^2) (x-hat - mu) and the probability-flow ODE
carries x-hat - mu by sqrt((v + sigma^2) / (v + sigma_T^2)). "The same grid" is the official
code's ``steps = M`` on our grid of M + 1 times (the solvers' module docstrings): both runs
see the same float32 noise levels (alpha_i, sigma_i), the ones our solver computes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pds.analytic.moments import mode_score_fn
from pds.method.precondition import Identity
from pds.method.sde import VESDE, VPSDE, base_sampling_eps, scale_and_sigma
from pds.runtime.errors import ConfigError
from pds.sampling.context import Context
from pds.sampling.dpm_solver import DPMSolverPP
from pds.sampling.grid import TimeGrid, noise_level_grid
from pds.sampling.loops import scan_loop
from pds.sampling.solver import solver_from_config
from pds.sampling.unipc import UniPC
from tests.pds.sampling.test_ode_solvers import ode_config

K, B = 8, 4  # channels (independent Gaussian modes), examples
MEAN = np.linspace(-1.0, 1.0, K)
VAR = np.geomspace(0.01, 2.0, K)
# sigma from 5 to 0.1 (VE) and from 3.4 to 0.01 (VP with beta_max 5): see TOL and the order test
SDES = {'vesde': VESDE(0.1, 5.0, 100), 'vpsde': VPSDE(0.1, 5.0, 100)}
METHODS = ('dpm_solver_2m', 'dpm_solver_3m', 'unipc')

# Our run is float32 (u = 2^-24 = 6e-8 per operation), the official loop float64 on the same
# float32 inputs, so their difference is our rounding. A step takes about a dozen operations,
# each rounding to u of a quantity whose error the Gaussian flow carries to the output no
# larger, relative to the output's scale (it contracts x-hat - mu, and errors with it, by
# sqrt((v + sigma_n^2) / (v + sigma^2)) <= 1): ~12 u per step, over 20 steps ~sqrt(240) u =
# 1e-6 as independent roundings (240 u = 1.4e-5 only if all 240 took one sign). The denoiser
# x-hat + sigma^2 alpha s cancels two terms of size |x-hat| (~sigma_max |z|): its rounding
# u |x-hat| reaches the output weighed by the multistep coefficients (<= 1) and by e^{k h}
# when a later step k reuses it (the flow contracts x-hat by e^{-h} per step); with
# sigma_max <= 5 and h <= log(340) / 5 = 1.2 that share is of the same order (it grows with
# sigma_max and h, hence this problem's sigma_max). 1e-5 = 170 u leaves a factor 5 to 10.
TOL = 1e-5


# --- the official algorithms, in their own variables ------------------------------------------
# x_t = alpha_t x_0 + std_t z, lambda_t = log(alpha_t / std_t); the model is the data
# prediction (``algorithm_type='dpmsolver++'``, UniPC's 'data_prediction'); ours: std = alpha
# sigma, x-hat = x / alpha.

class Schedule:
    def __init__(self, alpha: np.ndarray, sigma: np.ndarray):
        self.alpha, self.std = alpha, alpha * sigma
        self.lam = np.log(self.alpha) - np.log(self.std)
        self.nfe = 0

    def model(self, x: np.ndarray, i: int) -> np.ndarray:
        """E[x_0 | x_t = x] at time t_i (one evaluation)."""
        self.nfe += 1
        sigma2 = (self.std[i] / self.alpha[i]) ** 2
        return MEAN + VAR / (VAR + sigma2) * (x / self.alpha[i] - MEAN)


def official_dpm_solver_pp(x: np.ndarray, sch: Schedule, order: int) -> np.ndarray:
    """DPM_Solver.sample(x, steps=M, order, method='multistep', solver_type='dpmsolver',
    lower_order_final=True, denoise_to_zero=False) on the times t_0 .. t_M."""
    steps = len(sch.alpha) - 1
    models, times = [sch.model(x, 0)], [0]
    for step in range(1, steps + 1):
        if step < order:  # warm-up: multistep of order `step`
            step_order = step
        elif steps < 10:  # lower_order_final (only below 10 steps)
            step_order = min(order, steps + 1 - step)
        else:
            step_order = order
        s, t = times[-1], step
        h = sch.lam[t] - sch.lam[s]
        phi_1 = np.expm1(-h)
        x_t = sch.std[t] / sch.std[s] * x - sch.alpha[t] * phi_1 * models[-1]
        if step_order >= 2:
            r0 = (sch.lam[s] - sch.lam[times[-2]]) / h
            d1_0 = (models[-1] - models[-2]) / r0
        if step_order == 2:
            x_t = x_t - 0.5 * sch.alpha[t] * phi_1 * d1_0
        elif step_order == 3:
            r1 = (sch.lam[times[-2]] - sch.lam[times[-3]]) / h
            d1_1 = (models[-2] - models[-3]) / r1
            d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
            d2 = (d1_0 - d1_1) / (r0 + r1)
            phi_2 = phi_1 / h + 1.0
            phi_3 = phi_2 / h - 0.5
            x_t = x_t + sch.alpha[t] * phi_2 * d1 - sch.alpha[t] * phi_3 * d2
        x = x_t
        times.append(t)
        if step < steps:  # the final model value is not needed
            models.append(sch.model(x, t))
    return x


def official_unipc_bh2_update(x, sch: Schedule, models, times, t: int, order: int,
                              use_corrector: bool):
    """UniPC.multistep_uni_pc_bh_update (variant 'bh2', data prediction): (x_t, model_t)."""
    s, m0 = times[-1], models[-1]
    h = sch.lam[t] - sch.lam[s]
    rks, d1s = [], []
    for i in range(1, order):
        rk = (sch.lam[times[-(i + 1)]] - sch.lam[s]) / h
        rks.append(rk)
        d1s.append((models[-(i + 1)] - m0) / rk)
    rks = np.array([*rks, 1.0])
    hh = -h
    h_phi_1 = np.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1.0
    b_h = np.expm1(hh)  # bh2
    factorial, rows, b = 1, [], []
    for i in range(1, order + 1):
        rows.append(rks ** (i - 1))
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    x_base = sch.std[t] / sch.std[s] * x - sch.alpha[t] * h_phi_1 * m0
    assert order <= 2  # the order-2 predictor's weight is 1/2 (the official simplification)
    pred = 0.5 * d1s[0] if order == 2 else 0.0
    x_t = x_base - sch.alpha[t] * b_h * pred
    if not use_corrector:
        return x_t, None
    rhos_c = np.array([0.5]) if order == 1 else np.linalg.solve(np.array(rows), np.array(b))
    model_t = sch.model(x_t, t)
    corr = sum(rho * d for rho, d in zip(rhos_c[:-1], d1s, strict=True))
    return x_base - sch.alpha[t] * b_h * (corr + rhos_c[-1] * (model_t - m0)), model_t


def official_unipc_bh2(x: np.ndarray, sch: Schedule, order: int = 2) -> np.ndarray:
    """UniPC.sample(x, steps=M, order=2, method='multistep', lower_order_final=True,
    denoise_to_zero=False) on the times t_0 .. t_M."""
    steps = len(sch.alpha) - 1
    models, times = [sch.model(x, 0)], [0]
    for step in range(1, order):  # warm-up, corrected
        x, model_x = official_unipc_bh2_update(x, sch, models, times, step, step, True)
        times.append(step)
        models.append(model_x)
    for step in range(order, steps + 1):
        step_order = min(order, steps + 1 - step)  # lower_order_final, at every M
        x, model_x = official_unipc_bh2_update(x, sch, models, times, step, step_order,
                                               use_corrector=step < steps)
        times.append(step)
        if step < steps:
            models.append(model_x)
    return x


def official(method: str, x: np.ndarray, sch: Schedule) -> np.ndarray:
    if method == 'unipc':
        return official_unipc_bh2(x, sch)
    return official_dpm_solver_pp(x, sch, 3 if method == 'dpm_solver_3m' else 2)


# --- our solvers on the same problem --------------------------------------------------------

def grid_of(sde, steps: int) -> TimeGrid:
    """The official ``steps`` = M on log-SNR uniform times (its skip_type='logSNR'): our
    grid of M + 1 times, whose last interval (sigma_min to 0) the reference variant skips."""
    return noise_level_grid(sde, steps + 1, base_sampling_eps(sde), 'logsnr')


def schedule(sde, grid: TimeGrid) -> Schedule:
    """(alpha_i, sigma_i) at the grid's times as our solver computes them."""
    a, s = scale_and_sigma(sde, jnp.asarray(grid.t))
    return Schedule(np.asarray(a, np.float64), np.asarray(s, np.float64))


def prior(sch: Schedule, dtype, seed: int = 0) -> np.ndarray:
    """x_T = alpha_T (mu + sigma_T z), (B, 1, 1, K)."""
    z = np.random.default_rng(seed).standard_normal((B, 1, 1, K))
    return (sch.alpha[0] * MEAN + sch.std[0] * z).astype(dtype)


def solver(method: str, variant: str, steps: int):
    """Our solver of ``method`` for a grid of ``steps`` times."""
    if method == 'unipc':
        return UniPC(variant, steps)
    return DPMSolverPP(3 if method == 'dpm_solver_3m' else 2, variant, steps)


def run(method: str, variant: str, sde, grid: TimeGrid, x_T: np.ndarray):
    """(x_0, NFE per example) of our solver through the scan loop, in x_T's dtype."""
    dtype = x_T.dtype
    variables = {'mean': jnp.asarray(MEAN, dtype),
                 'spectrum': jnp.asarray(VAR.reshape(1, 1, K), dtype)}
    ctx = Context(sde, mode_score_fn(sde, variables), Identity(), jnp.zeros((B,), jnp.uint32),
                  (1, 1, K), jnp.mean, jnp.any)
    s = solver(method, variant, grid.num_steps)
    out = jax.jit(lambda x: scan_loop(s, ctx, grid, x))(jnp.asarray(x_T))
    return np.asarray(out.x, np.float64), np.asarray(out.nfe)


@pytest.mark.parametrize('sde', list(SDES))
@pytest.mark.parametrize('method', METHODS)
def test_reference_variant_reproduces_the_official_code(method, sde):
    """Within TOL of the official algorithm at M = 5, 10, 20 steps (lower_order_final on at
    5 for DPM-Solver++, at every M for UniPC), with its NFE (M: denoise_to_zero off); at 5
    steps the default variant differs by far more (the comparison tells the two apart)."""
    for steps in (5, 10, 20):
        grid = grid_of(SDES[sde], steps)
        sch = schedule(SDES[sde], grid)
        x_T = prior(sch, np.float32)
        want = official(method, x_T.astype(np.float64), sch)
        assert sch.nfe == steps
        scale = np.abs(want).max()
        got, nfe = run(method, 'reference', SDES[sde], grid, x_T)
        np.testing.assert_array_equal(nfe, steps)
        assert np.abs(got - want).max() <= TOL * scale, (steps, np.abs(got - want).max() / scale)
        if steps == 5:
            ours, _ = run(method, 'ours', SDES[sde], grid, x_T)
            assert np.abs(ours - want).max() > 100 * TOL * scale


def exact_output(variant: str, sch: Schedule, x_T: np.ndarray) -> np.ndarray:
    """The exact flow's result: x at sigma_min (reference: the official code stops there) or
    the denoiser of it (ours: its last interval, sigma_min to 0, is x-hat = D)."""
    sigma = sch.std / sch.alpha
    y = MEAN + np.sqrt((VAR + sigma[-1] ** 2) / (VAR + sigma[0] ** 2)) * (x_T / sch.alpha[0]
                                                                           - MEAN)
    if variant == 'reference':
        return sch.alpha[-1] * y
    return MEAN + VAR / (VAR + sigma[-1] ** 2) * (y - MEAN)


@pytest.mark.parametrize('method,variant,order', [  # the official 3M and UniPC: 2
    ('dpm_solver_2m', 'ours', 2), ('dpm_solver_2m', 'reference', 2),
    ('dpm_solver_3m', 'ours', 3), ('dpm_solver_3m', 'reference', 2),
    ('unipc', 'ours', 3), ('unipc', 'reference', 2)])
@pytest.mark.usefixtures('x64')
def test_order_of_each_variant(method, variant, order):
    """e(M) / e(2M) = 2^p (1 + O(1 / M)) for a method of order p, e the largest error against
    the exact flow relative to the output's scale, in float64 (the noise levels stay the
    float32 grid's; both runs see the same, so the exact solution is exact for them): the
    measured order log2(e(M) / e(2M)) rounds to p at M = 20 and 40. The official 3M is second
    order (its - phi_3 D2 is half the Taylor term; its first step is first order); the
    official UniPC's last step, first order without corrector, makes it second order, which
    shows where the denoiser still moves at sigma_min: here sigma_min = 0.1 against data
    variances down to 0.01 (on a flat end the third-order error hides it up to large M)."""
    sde = SDES['vesde']
    errs = []
    for steps in (20, 40, 80):
        grid = grid_of(sde, steps)
        sch = schedule(sde, grid)
        x_T = prior(sch, np.float64)
        want = exact_output(variant, sch, x_T)
        got, _ = run(method, variant, sde, grid, x_T)
        errs.append(np.abs(got - want).max() / np.abs(want).max())
    measured = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(measured - order) < 0.5), (measured, errs)


@pytest.mark.parametrize('method', (*METHODS, 'ddim'))
def test_unknown_variant_is_one_config_error(method):
    config = ode_config(method, 8)
    config.sampling.solver_variant = 'official'
    with pytest.raises(ConfigError, match=r"sampling\.solver_variant='official': allowed: "
                                          r"'ours', 'reference'"):
        solver_from_config(config, SDES['vesde'])


@pytest.mark.parametrize('method,fewest', [('dpm_solver_2m', 3), ('dpm_solver_3m', 4),
                                           ('unipc', 3)])
def test_reference_variant_needs_order_plus_one_times(method, fewest):
    """The official code asserts steps >= order: a grid of order + 1 times at least."""
    config = ode_config(method, fewest)
    config.sampling.solver_variant = 'reference'
    assert solver_from_config(config, SDES['vesde']).steps == fewest
    config.sampling.steps = fewest - 1
    with pytest.raises(ConfigError, match=rf'sampling\.steps={fewest - 1}: .*at least {fewest}'):
        solver_from_config(config, SDES['vesde'])


@pytest.mark.parametrize('method', METHODS)
def test_variant_is_recorded_in_the_summary(method):
    config = ode_config(method, 8)
    assert solver_from_config(config, SDES['vesde']).summary()['solver_variant'] == 'ours'
    config.sampling.solver_variant = 'reference'
    built = solver_from_config(config, SDES['vesde'])
    assert built.summary()['solver_variant'] == 'reference' and built.steps == 8


def test_ddim_has_no_variant():
    """DDIM agrees with its official code: 'reference' builds the same solver."""
    config = ode_config('ddim', 8)
    config.sampling.solver_variant = 'reference'
    assert solver_from_config(config, SDES['vesde']) == DPMSolverPP(1)
