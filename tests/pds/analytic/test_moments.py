"""Exact population moments of the PC sampler on a Gaussian field (pds/analytic/moments.py):
against Monte Carlo runs of the real sampler, the full-image probe, a hand-written one-mode
recursion (the reference and invariant predictor forms) and FourierMoments' Frechet distance."""

import dataclasses

import numpy as np
import pytest

from configs.analytic import field_16
from pds.analytic import fd
from pds.analytic.gaussian_field import GaussianField
from pds.analytic.moments import (
    PopulationMoments,
    experiment_moments,
    field_half_moments,
    frechet_distance,
    full_spectrum,
    population_moments,
    propagate,
)
from pds.experiment.assemble import experiment_from_config
from pds.method.pds_preconditioner import PDSPreconditioner, make_preconditioner
from pds.method.sde import VESDE
from pds.runtime.errors import ConfigError
from pds.runtime.mesh import data_mesh
from pds.sampling.grid import time_grid
from pds.sampling.pc import PredictorCorrector
from pds.sampling.pf_euler import ProbabilityFlowEuler
from pds.sampling.sampler import build_sampler
from pds.sampling.solver import solver_from_config

NUM_MC = 2000


def field_config(steps=20, **sampling):
    cfg = field_16.get_config()
    cfg.sampling.steps = steps
    for key, value in sampling.items():
        if key in ('alpha', 'predictor_form'):
            cfg.sampling.pds[key] = value
        elif key == 'sde':
            cfg.training.sde = value
        else:
            cfg.sampling[key] = value
    return cfg


def setup(cfg):
    exp = experiment_from_config(cfg)
    return exp, solver_from_config(cfg, exp.sde)


# --- Monte Carlo agreement ----------------------------------------------------------------------

def independent_modes(h, w):
    """(keep, real): half-spectrum modes that are not the conjugate of another kept one, and
    which of them are real (self-conjugate)."""
    keep = np.ones((h, w // 2 + 1), bool)
    real = np.zeros_like(keep)
    for col in sorted({0, w // 2} if w % 2 == 0 else {0}):
        keep[h // 2 + 1:, col] = False
        real[0, col] = True
        if h % 2 == 0:
            real[h // 2, col] = True
    return keep, real


def monte_carlo(exp, solver, n, seed=3):
    """Per-mode sample mean (of x - mu) and variance of n samples of the real sampler (one
    batch, so the Langevin step's batch means run over all n). With seed 3 the prior's DC
    sample mean of channel 1 happens to sit at -3.7 standard errors (a chance draw: over 40
    seeds the prior DC z-scores have variance 1.09), visible where the prior dominates."""
    sampler = build_sampler(exp.sde, exp.grid, exp.score_builder, exp.image_shape, n,
                            data_mesh(), solver)
    x = np.asarray(sampler(exp.variables, exp.precond, seed), np.float64)
    spec = np.fft.rfft2(x - np.asarray(exp.field.mean), axes=(1, 2), norm='ortho')
    mean = spec.mean(axis=0)
    return mean, np.sum(np.abs(spec - mean) ** 2, axis=0) / (n - 1)


def band_agreement(pop: PopulationMoments, mc_var, n):
    """Per band: (mean over independent modes of V_mc / V_pop, its standard error). A sample
    variance of n draws has variance V^2 / (n - 1) for a complex mode (two real dof of
    variance V / 2 each) and 2 V^2 / (n - 1) for a real one."""
    h, w, _ = pop.image_shape
    keep, real = independent_modes(h, w)
    band = fd.band_index(h, w)[:, : w // 2 + 1]
    out = {}
    for b, name in enumerate(fd.BANDS):
        sel = keep & (band == b)
        ratio = (mc_var[sel] / pop.var[sel]).ravel()
        per_mode = np.where(real[sel], 2.0, 1.0) / (n - 1)
        c = mc_var.shape[-1]
        out[name] = (ratio.mean(), np.sqrt(np.sum(per_mode) * c) / ratio.size)
    return out


MC_CASES = {  # few iterations: the real sampler at 2000 samples costs ~0.2 s per iteration
    'pds-reference-rd-langevin-ve': dict(steps=8),
    'pds-invariant-em-ald2-ve-alpha3': dict(steps=5, alpha=3.0, predictor='euler_maruyama',
                                            corrector='ald', n_steps_each=2,
                                            predictor_form='invariant'),
    # more samplers, SDEs and alphas (VP and subVP need more than beta_max = 20 iterations)
    'pds-invariant-rd-langevin-ve-alpha3': dict(steps=16, alpha=3.0, predictor_form='invariant'),
    'pds-invariant-em-ald2-vp': dict(steps=24, sde='vpsde', predictor='euler_maruyama',
                                     corrector='ald', n_steps_each=2,
                                     predictor_form='invariant'),
    'baseline-ancestral-langevin-ve': dict(steps=12, predictor='ancestral_sampling',
                                           precondition='none'),
    'pds-reference-em-langevin2-vp': dict(steps=24, sde='vpsde', predictor='euler_maruyama',
                                          n_steps_each=2, alpha=8.0),
    'pds-invariant-rd-none-subvp': dict(steps=24, sde='subvpsde', corrector='none',
                                        predictor_form='invariant'),
    'pds-reference-corrector-only-ve-no-noise-removal': dict(
        steps=20, predictor='none', noise_removal=False),
    'pds-reference-rd-langevin-ve-50': dict(steps=50, alpha=2.0, snr=0.1),
}


def mean_z_scores(pop: PopulationMoments, mc_mean, n, field):
    """(z of every independent real degree of freedom of the sample mean, z of the DC modes):
    the sample mean of n draws has variance V / n (V / 2n per part of a complex mode)."""
    h, w, _ = pop.image_shape
    keep, real = independent_modes(h, w)
    mu, _ = field_half_moments(field, h, w)
    err = mc_mean - (pop.mean - mu)
    part_var = np.where(real[..., None], 1.0, 0.5) * pop.var / n
    z_re, z_im = err.real / np.sqrt(part_var), err.imag / np.sqrt(part_var)
    return np.concatenate([z_re[keep].ravel(), z_im[keep & ~real].ravel()]), z_re[0, 0]


def check_monte_carlo(case):
    exp, solver = setup(field_config(**case))
    pop = experiment_moments(exp, solver)
    mc_mean, mc_var = monte_carlo(exp, solver, NUM_MC)
    for name, (ratio, se) in band_agreement(pop, mc_var, NUM_MC).items():
        assert abs(ratio - 1.0) < 3 * se, (name, ratio, se, pop.band_ratios)
    z, z_dc = mean_z_scores(pop, mc_mean, NUM_MC, exp.field)
    assert abs(np.mean(z**2) - 1.0) < 3 * np.sqrt(2.0 / z.size), np.mean(z**2)
    assert np.all(np.abs(z_dc) < 4.5), z_dc  # the mean itself: a few draws of N(0, 1)


@pytest.mark.slow
@pytest.mark.parametrize('case', list(MC_CASES), ids=list(MC_CASES))
@pytest.mark.optimized
def test_band_variances_agree_with_monte_carlo(case):
    check_monte_carlo(MC_CASES[case])


# --- the per-mode layout against the full-image probe -------------------------------------------

@pytest.mark.parametrize('case', [
    dict(steps=6),
    dict(steps=21, sde='vpsde', predictor='ancestral_sampling', corrector='ald',
         precondition='none', n_steps_each=2, predictor_form='invariant'),
    dict(steps=6, predictor='euler_maruyama', predictor_form='invariant', noise_removal=False),
])
def test_mode_layout_matches_full_image_probe(case):
    """The default layout runs the step functions once per mode (a 1 x 1 image per mode); the
    'image' layout probes them on the real image with the project's exact score and
    PDSPreconditioner. Both must agree to float32 precision."""
    exp, solver = setup(field_config(**case))
    a = experiment_moments(exp, solver, layout='modes')
    b = experiment_moments(exp, solver, layout='image')
    np.testing.assert_allclose(a.var, b.var, rtol=1e-4)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-4, atol=1e-3)
    assert a.frechet_distance == pytest.approx(b.frechet_distance, rel=1e-4)
    assert a.nfe == b.nfe == exp.grid.num_steps * (solver.n_steps_each + 1)


# --- the Frechet distance -------------------------------------------------------------------------

def test_exact_field_moments_have_zero_frechet_distance():
    field = GaussianField(mean=(0.5, 0.2), variance=(0.04, 0.01))
    for h, w in ((16, 16), (6, 5), (1, 1)):
        mean, var = field_half_moments(field, h, w)
        assert frechet_distance(mean, var, field, w) == (0.0, 0.0)


@pytest.mark.parametrize('shape', [(8, 8, 2), (6, 5, 2)])
def test_frechet_distance_is_the_large_sample_limit_of_fourier_moments(shape):
    """Full-spectrum running sums built from the population moments, as an n-sample
    FourierMoments would hold them at n -> infinity, give the same FD: each Hermitian pair
    counted once per real degree of freedom (odd and even widths)."""
    h, w, c = shape
    field = GaussianField(mean=(0.5, 0.2), variance=(0.04, 0.01))
    gain = make_preconditioner(1.0 + 0.3 * np.random.default_rng(0).random((c, h, w)))
    pop = propagate(VESDE(0.01, 20.0, 6), time_grid(6, 1e-5), field, gain,
                    PredictorCorrector(snr=0.2), shape)
    assert pop.frechet_distance > 0.01 and pop.mean_error_sq > 0
    n = 10**12
    m = pop.full_mean() - np.fft.fft2(np.broadcast_to(field.mean, shape), axes=(0, 1),
                                      norm='ortho')
    acc = fd.FourierMoments(np.asarray(field.mean), n, n * m,
                            n * (pop.full_var() + np.abs(m) ** 2))
    assert acc.frechet_distance(field.spectrum(h, w)) == pytest.approx(pop.frechet_distance,
                                                                        rel=1e-9)
    np.testing.assert_allclose(full_spectrum(pop.var, w), pop.full_var())
    assert pop.band_ratios == fd.band_variance_ratios(pop.full_var(), field.spectrum(h, w))


# --- one Fourier mode, predictor only: the reference form against the invariant form ------------

def one_mode_by_hand(form, n, lam=0.01, gain=1.25, noise_removal=False):
    """The reverse-diffusion predictor's per-mode recursion written out in float64."""
    sde = VESDE(0.01, 348.0, n)
    sigmas = np.exp(np.linspace(np.log(0.01), np.log(348.0), n))
    t = time_grid(n, 1e-5).t.astype(np.float64)
    var = 348.0**2 * gain**2
    for it in range(n):
        i = n - 1 - it
        g2 = sigmas[i] ** 2 - (sigmas[i - 1] ** 2 if i > 0 else 0.0)
        s2 = float(sde.sigma(t[it])) ** 2
        k = gain**2 if form == 'reference' else 0.5 * (1.0 + gain**2)
        a = 1.0 - k * g2 / (lam + s2)
        var = a**2 * var + (0.0 if noise_removal and it == n - 1 else g2 * gain**2)
    return var / lam


@pytest.mark.parametrize('form,n,expected', [
    ('reference', 200, 0.765), ('reference', 2000, 0.74),
    ('invariant', 200, 1.045), ('invariant', 2000, 1.004)])
def test_one_mode_predictor_only(form, n, expected):
    """Data variance 0.01, VE 0.01 -> 348, gain 1.25, reverse diffusion alone. The ratios are
    those of the final x (the last step's noise included): noise_removal=False. The reference
    form ends at 0.74 of the target variance from N = 2000 on; at N = 200 the ratio is 0.765."""
    field = GaussianField(mean=(0.3,), variance=(0.01,))
    solver = PredictorCorrector('reverse_diffusion', 'none', noise_removal=False,
                                predictor_form=form)
    pop = propagate(VESDE(0.01, 348.0, n), time_grid(n, 1e-5), field,
                    make_preconditioner(np.full((1, 1, 1), 1.25)), solver, (1, 1, 1))
    ratio = float(pop.var[0, 0, 0] / 0.01)
    assert ratio == pytest.approx(expected, abs=0.01)
    assert ratio == pytest.approx(one_mode_by_hand(form, n), rel=1e-4)
    assert pop.mean[0, 0, 0].real == pytest.approx(0.3, rel=1e-4)
    removed = propagate(VESDE(0.01, 348.0, n), time_grid(n, 1e-5), field,
                        make_preconditioner(np.full((1, 1, 1), 1.25)),
                        dataclasses.replace(solver, noise_removal=True), (1, 1, 1))
    assert float(removed.var[0, 0, 0] / 0.01) == pytest.approx(
        one_mode_by_hand(form, n, noise_removal=True), rel=1e-4)


# --- configs and errors ---------------------------------------------------------------------------

def test_population_moments_of_a_config():
    cfg = field_config(steps=20)
    pop = population_moments(cfg, experiment_from_config(cfg))
    assert pop.nfe == 40 and pop.iterations == 20 and pop.image_shape == (16, 16, 3)
    assert np.isfinite(pop.frechet_distance) and set(pop.band_ratios) == set(fd.BANDS)
    assert pop.summary()['frechet_distance'] == pop.frechet_distance


@pytest.mark.parametrize('field,value', [
    ('model.name', 'ncsnpp'), ('sampling.method', 'unknown_solver'),
    ('sampling.predictor', 'unknown_predictor'), ('sampling.corrector', 'unknown_corrector'),
    ('sampling.pds.space_mask', 'stats')])
def test_config_errors_name_the_field(field, value):
    cfg = field_config()
    exp = experiment_from_config(cfg)
    section, _, key = field.rpartition('.')
    node = cfg
    for part in section.split('.'):
        node = node[part]
    node[key] = value
    with pytest.raises(ConfigError) as err:
        population_moments(cfg, exp)
    assert err.value.field == field


def test_part_errors_name_the_field():
    cfg = field_config()
    exp, solver = setup(cfg)
    space = PDSPreconditioner(freq=None, space=np.ones((16, 16, 3), np.float32))
    cases = [
        ('sampling.pds.space_mask', dict(precond=space)),
        ('sampling.method', dict(solver=ProbabilityFlowEuler())),
        ('sampling.predictor', dict(solver=dataclasses.replace(solver, predictor='pf'))),
        ('model.name', dict(field=None)),
    ]
    for field, change in cases:
        args = dict(sde=exp.sde, grid=exp.grid, field=exp.field, precond=exp.precond,
                    solver=solver, image_shape=exp.image_shape) | change
        with pytest.raises(ConfigError) as err:
            propagate(**args)
        assert err.value.field == field
    network = dataclasses.replace(exp, score_builder=lambda sde, v: None)
    with pytest.raises(ConfigError) as err:
        experiment_moments(network, solver)
    assert err.value.field == 'model.name'
