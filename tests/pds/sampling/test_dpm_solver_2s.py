"""DPM-Solver++(2S): second order in float64 on exact population moments, and its output on a
Gaussian problem equal to the official update written out here in plain numpy (independent
of the solver's code). Its declaration (NFE 2N - 1, the corrector policy, the exact moments
engine, the bench preset) is checked with every other solver's in test_declarations.py."""

import itertools

import numpy as np
import pytest

from configs.analytic import field_16
from pds.analytic.moments import population_moments
from pds.experiment.assemble import experiment_from_config
from pds.sampling.grid import sampling_schedule, sigma_of_t


def config_for(steps: int, sde: str = 'vesde'):
    config = field_16.get_config()
    s = config.sampling
    s.method, s.grid, s.steps, s.precondition, s.prior = 'dpm_solver_2s', 'logsnr', steps, \
        'none', 'mean'
    config.training.sde = sde
    return config


def moments(steps: int, sde: str = 'vesde'):
    config = config_for(steps, sde)
    return population_moments(config, experiment_from_config(config))


@pytest.mark.slow
@pytest.mark.parametrize('sde', ['vesde', 'vpsde'])
def test_second_order(x64, sde):
    """e(N) / e(2N) -> 4 against N = 2048 (float64: rounding far below truncation). The last
    interval (sigma_min to 0) is the same affine map at every N: it scales the error, not its
    order; 2^2 (1 + O(1/N)) within 25% from N = 32."""
    ref = moments(2048, sde)
    errs = []
    for n in (32, 64, 128):
        m = moments(n, sde)
        errs.append(np.abs(m.mean - ref.mean).max()
                    + np.abs(np.sqrt(m.var) - np.sqrt(ref.var)).max())
    ratios = np.array(errs[:-1]) / np.array(errs[1:]) / 4.0
    assert np.all(np.abs(ratios - 1) < 0.25), ratios


def official_2s(x_hat, sigmas, var):
    """The official 2S update (dpmsolver++, r1 = 1/2) on one Gaussian mode of data variance
    ``var`` and mean 0, whose denoiser is D(y; s) = var / (var + s^2) y, in float64:
    lambda = -log s, h = lambda_n - lambda, s_mid = s e^{-h/2},
    y_mid = (s_mid / s) y - expm1(-h/2) D(y; s), y_n = (s_n / s) y - expm1(-h) D(y_mid; s_mid),
    and y_n = D(y; s) into s_n = 0."""
    den = lambda y, s: var / (var + s * s) * y
    y = x_hat
    for s, s_n in itertools.pairwise(sigmas):
        if s_n == 0:
            y = den(y, s)
            continue
        h = np.log(s / s_n)
        s_mid = s * np.exp(-0.5 * h)
        y_mid = (s_mid / s) * y - np.expm1(-0.5 * h) * den(y, s)
        y = (s_n / s) * y - np.expm1(-h) * den(y_mid, s_mid)
    return y


@pytest.mark.parametrize('steps', [5, 10])
def test_matches_the_official_update_per_mode(x64, steps):
    """Per Fourier mode the exact-score flow is linear, so the output variance over the
    prior is gain^2 sigma_max^2 with gain = official_2s(1) per mode: compared with the exact
    moments engine, which runs THIS solver's steps. The official loop runs in float64 on the
    same float32 grid times and the same half spectrum; the solver's side carries float32
    parameters (the stored times and spectrum, relative rounding 6e-8, each entering the
    N-step product a few times), so 1e-6 bounds rounding for N <= 10, while a wrong midpoint
    level or weight moves the gain by more than 1e-3."""
    config = config_for(steps)
    config.sampling.prior = 'score_sde'  # x_T = sigma_max z: variance sigma_max^2 per mode
    sde, grid = sampling_schedule(config)
    sigmas = np.append(sigma_of_t(sde, np.asarray(grid.t, np.float64)), 0.0)
    pop = population_moments(config, experiment_from_config(config))
    gain = official_2s(np.ones_like(pop.spectrum), sigmas, pop.spectrum)
    np.testing.assert_allclose(pop.var, gain**2 * sigmas[0] ** 2, rtol=1e-6)
