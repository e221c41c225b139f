"""The likelihood ODE against closed forms: exact divergence and dopri5 reproduce the Gaussian
field's and the mixture's log-density at eps (up to the prior's closed-form mismatch), the
error shrinks with rtol, Hutchinson is unbiased with its standard error shrinking as
1 / sqrt(probes), the fixed-step solvers converge at their orders, NFE counts, and
per-example results do not depend on the batch split (1 vs 4 devices:
tests/helpers/likelihood_device_check.py)."""

import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from pds.analytic.gaussian_field import GaussianField, exact_score_fn
from pds.analytic.mixture import GaussianMixtureField, mixture_score_fn
from pds.likelihood import closed_form, units
from pds.likelihood.divergence import Divergence
from pds.likelihood.ode import AdaptiveLikelihood, FixedStepLikelihood, ForwardGrid
from pds.likelihood.priors import make_prior
from pds.likelihood.program import build_likelihood
from pds.method.sde import VESDE, VPSDE
from pds.runtime.mesh import data_mesh, replicate
from pds.sampling.grid import noise_level_grid
from tests.helpers.paths import ROOT, jax_env

H, W, C = 4, 4, 2
D = H * W * C
EPS = 1e-5
FIELD = GaussianField((0.5, 0.4), (0.04, 0.03))
MIX = GaussianMixtureField((GaussianField((0.3, 0.6), (0.04, 0.03)),
                            GaussianField((0.7, 0.4), (0.02, 0.05), beta=1.5)), (0.6, 0.4))
VE, VP = VESDE(0.01, 20.0), VPSDE()


def data(target, n: int, seed: int = 0) -> np.ndarray:
    return target.sample(np.random.default_rng(seed), n, H, W).astype(np.float32)


def likelihood(target, sde, solver, x, prior='score_sde', seed=0, offset=0):
    """The compiled program on ``x``; returns (result as numpy, prior)."""
    mean = target.prior_mean(H, W) if prior != 'score_sde' else None
    half = FIELD.half_spectrum(H, W) if prior == 'gaussian' else None
    pri = make_prior(prior, sde, mean, half)
    score = exact_score_fn if isinstance(target, GaussianField) else mixture_score_fn
    mesh = data_mesh()
    prog = build_likelihood(sde, score, (H, W, C), len(x), mesh, solver, pri)
    out = prog.run(replicate(target.variables(H, W), mesh), jnp.asarray(x), seed, offset)
    return {k: np.asarray(v) for k, v in out._asdict().items()}, pri


def solver_error(target, sde, out, pri, x) -> np.ndarray:
    """bits/dim of the ODE minus the closed form (marginal at eps plus the prior's mismatch
    at the trajectory's end)."""
    truth = closed_form.marginal_log_density(target, sde, x, EPS)
    mismatch = closed_form.prior_mismatch(target, sde, pri, out['x_T'])
    return units.bits_per_dim(out['logp'], D) - units.bits_per_dim(truth + mismatch, D)


def dopri5(rtol=1e-5, probes=0, probe='rademacher'):
    return AdaptiveLikelihood(Divergence(probes, probe), EPS, rtol=rtol, atol=rtol)


@pytest.mark.parametrize('sde,prior', [(VE, 'score_sde'), (VP, 'score_sde'), (VE, 'mean'),
                                       (VP, 'gaussian')])
def test_exact_divergence_gives_the_field_closed_form(sde, prior):
    x = data(FIELD, 32)
    out, pri = likelihood(FIELD, sde, dopri5(), x, prior)
    err = solver_error(FIELD, sde, out, pri, x)
    assert np.abs(err).max() < 1e-3 and abs(err.mean()) < 2e-4, err
    if prior == 'gaussian':  # the marginal at T itself: no mismatch, in closed form
        assert closed_form.prior_kl(FIELD, sde, pri, H, W) < 1e-4
        mismatch = closed_form.prior_mismatch(FIELD, sde, pri, out['x_T'])
        assert np.abs(mismatch).max() / D < 1e-5


def test_exact_divergence_gives_the_mixture_closed_form():
    x = data(MIX, 32)
    out, pri = likelihood(MIX, VE, dopri5(), x)
    err = solver_error(MIX, VE, out, pri, x)
    assert np.abs(err).max() < 1e-3 and abs(err.mean()) < 2e-4, err


def test_error_shrinks_with_rtol():
    x = data(FIELD, 32, seed=1)
    errs, nfes = [], []
    for rtol in (1e-3, 1e-4, 1e-5):
        out, pri = likelihood(FIELD, VE, dopri5(rtol), x)
        errs.append(np.abs(solver_error(FIELD, VE, out, pri, x)).mean())
        nfes.append(out['nfe'].mean())
    assert errs[0] > errs[1] > errs[2] and nfes[0] < nfes[1] < nfes[2], (errs, nfes)


def test_hutchinson_is_unbiased_and_its_se_shrinks_as_one_over_root_probes():
    """Over 256 examples the estimator's mean error is within 3 SE of 0; the SE with 4 probes
    is half that with 1 (the sample SDs of 256 values carry ~4.4 % noise each: the ratio's
    band [1.6, 2.5] is over 3 of its standard deviations wide on either side)."""
    x = data(FIELD, 256, seed=2)
    se = {}
    for probes in (1, 4):
        out, pri = likelihood(FIELD, VE, dopri5(1e-4, probes), x)
        err = solver_error(FIELD, VE, out, pri, x)
        se[probes] = err.std(ddof=1) / np.sqrt(len(err))
        assert abs(err.mean()) < 3 * se[probes], (probes, err.mean(), se[probes])
    assert 1.6 < se[1] / se[4] < 2.5, se


def test_gaussian_probes_are_unbiased():
    x = data(FIELD, 256, seed=3)
    out, pri = likelihood(FIELD, VP, dopri5(1e-4, 2, 'gaussian'), x)
    err = solver_error(FIELD, VP, out, pri, x)
    assert abs(err.mean()) < 3 * err.std(ddof=1) / np.sqrt(len(err))


@pytest.mark.parametrize('method,order', [('euler', 1), ('heun', 2)])
def test_fixed_step_solvers_converge_at_their_order(method, order):
    x = data(FIELD, 16, seed=4)
    errs = []
    for n in (128, 256):
        grid = noise_level_grid(VE, n + 1, EPS, 'logsnr')
        solver = FixedStepLikelihood(Divergence(0), ForwardGrid(grid.t[::-1].copy()), method)
        out, pri = likelihood(FIELD, VE, solver, x)
        assert (out['nfe'] == n * order).all() and (out['steps'] == n).all()
        errs.append(np.abs(solver_error(FIELD, VE, out, pri, x)).mean())
    ratio = errs[0] / errs[1]  # 2^order when the step halves
    assert 2**order * 0.7 < ratio < 2**order * 1.4, (errs, ratio)


def test_nfe_counts_the_attempted_steps():
    out, _ = likelihood(FIELD, VE, dopri5(1e-3), data(FIELD, 8))
    np.testing.assert_array_equal(out['nfe'], 2 + 6 * out['steps'])


@pytest.mark.default_codegen  # the two programs are equal in exact arithmetic only
def test_results_do_not_depend_on_the_batch_split():
    x = data(MIX, 16, seed=5)
    solver = dopri5(1e-4, 2, 'gaussian')
    whole, _ = likelihood(MIX, VE, solver, x, seed=7, offset=32)
    first, _ = likelihood(MIX, VE, solver, x[:8], seed=7, offset=32)
    second, _ = likelihood(MIX, VE, solver, x[8:], seed=7, offset=40)
    for key in ('logp', 'delta', 'prior_logp', 'nfe', 'x_T'):
        np.testing.assert_array_equal(whole[key], np.concatenate([first[key], second[key]]))
    other, _ = likelihood(MIX, VE, solver, x, seed=8, offset=32)  # other probes
    assert not np.array_equal(other['delta'], whole['delta'])


@pytest.mark.slow
def test_identical_on_1_and_4_devices():
    env = jax_env(4, default_codegen=True)
    script = os.path.join(ROOT, 'tests', 'helpers', 'likelihood_device_check.py')
    res = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0 and 'identical' in res.stdout, res.stdout + res.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.optimized  # its time goes into running the compiled loop
def test_acceptance_on_the_16x16_field():
    """configs/analytic/field_16.py's field (16x16x3, VE sigma_max 20) with its exact score:
    the exact divergence at rtol 1e-5 within 1e-3 bits/dim of the closed form per example
    (16 examples: 768 JVPs per evaluation), and one Rademacher probe unbiased over 256
    examples (benchmarks/likelihood_exact.py runs all 256 with the exact divergence)."""
    from configs.analytic import field_16
    from pds.analytic.gaussian_field import field_from_config

    config = field_16.get_config()
    field, sde = field_from_config(config), VESDE(0.01, 20.0)
    h = 16
    x = field.sample(np.random.default_rng(6), 256, h, h).astype(np.float32)
    prior = make_prior('score_sde', sde, None, None)
    mesh = data_mesh()
    d = h * h * 3

    def error(solver, xs):
        prog = build_likelihood(sde, exact_score_fn, (h, h, 3), len(xs), mesh, solver, prior)
        out = prog.run(replicate(field.variables(h, h), mesh), jnp.asarray(xs), 0, 0)
        truth = closed_form.marginal_log_density(field, sde, xs, EPS)
        mismatch = closed_form.prior_mismatch(field, sde, prior, np.asarray(out.x_T))
        return (units.bits_per_dim(np.asarray(out.logp), d)
                - units.bits_per_dim(truth + mismatch, d))

    err = error(dopri5(1e-5), x[:16])
    assert np.abs(err).max() < 1e-3 and abs(err.mean()) < 2e-4, err
    err = error(dopri5(1e-5, 1), x)
    assert abs(err.mean()) < 3 * err.std(ddof=1) / np.sqrt(len(err)), err.mean()
