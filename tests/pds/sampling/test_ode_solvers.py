"""The ODE solvers (EDM Heun, DPM-Solver++(2M), probability-flow Euler), the noise-level grids
and the mean prior, against closed forms: the grids' noise levels, each solver's order of
convergence measured on exact population moments (float64), the NFE count, agreement of the
exact moments with sampled moments, and the configuration rules (no preconditioner in an
ODE solver). EDM's stochastic sampler (churn) and DDIM likewise: churn 0 is EDM Heun bit for
bit, its step-by-step exact moments agree with its samples and reach the 50k floor, and its
fields are validated."""

import numpy as np
import pytest

from configs.analytic import field_16
from pds.analytic.fd import FourierMoments, expected_floor
from pds.analytic.moments import population_moments
from pds.experiment.assemble import experiment_from_config
from pds.experiment.rounds import sample_rounds
from pds.method.sde import VESDE, VPSDE, subVPSDE
from pds.runtime.errors import ConfigError
from pds.sampling.grid import noise_level_grid, sigma_of_t
from pds.sampling.solver import solver_from_config, solver_specs

SOLVERS = {'pf_euler': ('logsnr', 1), 'edm_heun': ('karras', 2), 'dpm_solver_2m': ('logsnr', 2),
           'dpm_solver_3m': ('logsnr', 3), 'ddim': ('logsnr', 1), 'unipc': ('logsnr', 3)}
# the grid of each solver: the order tests' choice above, else the one it declares
GRID = {spec.name: spec.grid for spec in solver_specs()} | {
    m: grid for m, (grid, _) in SOLVERS.items()}


def ode_config(method: str, steps: int, sde: str = 'vesde', prior: str = 'mean'):
    config = field_16.get_config()
    config.sampling.precondition = 'none'
    config.sampling.method = method
    config.sampling.grid = GRID[method]
    config.sampling.steps = steps
    config.sampling.prior = prior
    config.training.sde = sde
    return config


def moments(method: str, steps: int, sde: str = 'vesde', prior: str = 'mean'):
    config = ode_config(method, steps, sde, prior)
    return population_moments(config, experiment_from_config(config))


@pytest.mark.parametrize('sde', [VESDE(0.01, 348.0, 10), VPSDE(N=30), subVPSDE(N=30)])
def test_noise_level_grids_follow_their_closed_forms(sde):
    eps, n = 1e-3, 9
    s_max, s_min = sigma_of_t(sde, np.array([1.0, eps]))
    u = np.linspace(0, 1, n)
    # tolerance: t is stored in float32 (relative 6e-8) and |d log sigma / d log t| <= 10.4
    # here (VE: t log(sigma_max / sigma_min)), so sigma(t) carries < 1e-6 relative error; the
    # interpolation on 20,001 times adds less. 1e-4 leaves a factor 100.
    karras = noise_level_grid(sde, n, eps, 'karras', rho=7.0)
    want = (s_max ** (1 / 7) + u * (s_min ** (1 / 7) - s_max ** (1 / 7))) ** 7
    np.testing.assert_allclose(sigma_of_t(sde, karras.t), want, rtol=1e-4)
    logsnr = noise_level_grid(sde, n, eps, 'logsnr')
    np.testing.assert_allclose(np.log(sigma_of_t(sde, logsnr.t)), np.linspace(
        np.log(s_max), np.log(s_min), n), atol=1e-4)
    for grid in (karras, logsnr):
        assert grid.t[0] == 1.0 and grid.t[-1] == np.float32(eps)
        assert np.all(np.diff(grid.t) < 0) and np.all(np.diff(grid.index) <= 0)
    if isinstance(sde, VESDE):  # sigma(t) is geometric: log-SNR uniform is t uniform
        np.testing.assert_allclose(logsnr.t, np.linspace(1.0, eps, n), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize('sde', ['vesde', 'vpsde'])
@pytest.mark.parametrize('method', list(SOLVERS))
def test_each_solver_converges_at_its_order(x64, method, sde):
    """Output moments at N and 2N steps against N = 4096 (float64, so rounding stays far
    below the truncation error): the error ratio e(N) / e(2N) tends to 2^p for a method of
    order p (2^p (1 + O(1/N)); within 25% from N = 32). The last interval (sigma_min to 0) is
    the same at every N and affine, so it scales the error without changing its order.
    DPM-Solver++(3M) converges faster than third order on this linear problem (ratios 15-24
    from N = 24, near 2^4): it is held to at least third order, on fewer steps, before its
    error reaches the float32 grid's resolution. With the exact score, the fine solution lies
    below the 50k-sample floor."""
    ref = moments(method, 4096, sde)
    order = SOLVERS[method][1]
    steps = (24, 48, 96) if order == 3 else (32, 64, 128, 256)
    errs = []
    for n in steps:
        m = moments(method, n, sde)
        errs.append(np.abs(m.mean - ref.mean).max()
                    + np.abs(np.sqrt(m.var) - np.sqrt(ref.var)).max())
    ratios = np.array(errs[:-1]) / np.array(errs[1:]) / 2**order
    if order == 3:
        assert np.all(ratios > 0.75), ratios
    else:
        assert np.all(np.abs(ratios - 1) < 0.25), ratios
    config = ode_config(method, 32, sde)
    spectrum = experiment_from_config(config).field.spectrum(16, 16)
    assert ref.frechet_distance < expected_floor(spectrum)


def test_nfe_counts_of_the_solvers():
    assert moments('edm_heun', 18).nfe == 35  # Heun: 2 per step, the last (to sigma 0) Euler
    assert moments('dpm_solver_2m', 20).nfe == 20  # multistep: 1 per step
    assert moments('dpm_solver_3m', 20).nfe == 21  # + the trapezoid first step
    assert moments('pf_euler', 20).nfe == 20
    assert moments('ddim', 20).nfe == 20
    assert moments('edm_stochastic', 18).nfe == 35  # as Heun
    assert moments('unipc', 20).nfe == 20  # 2 in the first step, 0 in the last


@pytest.mark.parametrize('method,steps,prior', [
    ('edm_heun', 6, 'mean'), ('dpm_solver_2m', 8, 'mean'), ('dpm_solver_3m', 8, 'mean'),
    ('dpm_solver_2m', 8, 'gaussian'), ('pf_euler', 8, 'score_sde'), ('unipc', 8, 'mean')])
def test_exact_moments_agree_with_the_sampler(method, steps, prior):
    """The sampler's unbiased FD over 128 samples estimates the ring-pooled FD that the exact
    moments give: within 4 of its standard errors (a false alarm every ~16,000 runs)."""
    config = ode_config(method, steps, prior=prior)
    exp = experiment_from_config(config)
    exact = population_moments(config, exp)
    res = sample_rounds(exp, solver_from_config(config, exp.sde), config, 128, 64)
    assert isinstance(res.moments, FourierMoments) and res.nfe == exact.nfe
    h, w, _ = exp.image_shape
    spectrum = exp.field.spectrum(h, w)
    fd = res.moments.unbiased_frechet_distance(spectrum)
    se = res.moments.unbiased_fd_standard_error(spectrum)
    assert abs(fd - exact.ring_pooled_fd()) < 4 * se, (fd, se, exact.ring_pooled_fd())


def test_the_mean_prior_removes_the_ode_offset():
    """score_sde's VE prior has mean 0; an ODE carries that offset to the output's DC mode,
    which the mean prior (x_T = mu + sigma_max z) removes."""
    plain, mean = moments('dpm_solver_2m', 20, prior='score_sde'), moments('dpm_solver_2m', 20)
    assert mean.frechet_distance < plain.frechet_distance
    assert mean.mean_error_sq < 0.1 * plain.mean_error_sq


@pytest.mark.parametrize('method', list(SOLVERS))
def test_no_preconditioner_in_an_ode_solver(method):
    config = ode_config(method, 4)
    config.sampling.precondition = 'pds'
    with pytest.raises(ConfigError, match=r'sampling.precondition.*ODE drift'):
        solver_from_config(config, VESDE())


@pytest.mark.parametrize('field,value,allowed', [('grid', 'cosine', 'karras'),
                                                 ('rho', 0.0, '> 0'),
                                                 ('prior', 'zero', 'gaussian')])
def test_bad_grid_rho_and_prior(field, value, allowed):
    config = ode_config('edm_heun', 4)
    config.sampling[field] = value
    with pytest.raises(ConfigError, match=rf'sampling.{field}.*{allowed}'):
        experiment_from_config(config)


def test_mean_prior_needs_a_known_data_mean():
    """A network's data without a stats file: the mean is measured on its images, so data
    that cannot be read is one ConfigError naming its field."""
    from tests.helpers.tiny_train_config import get_config

    config = get_config()
    config.data.dataset = 'npz'
    config.sampling.precondition = 'none'
    config.sampling.prior = 'mean'
    config.sampling.allow_random_init = True
    with pytest.raises(ConfigError, match=r"data\.path=''"):
        experiment_from_config(config)


def test_gaussian_prior_draws_the_marginal_at_the_prior_time():
    """x_T of the Gaussian prior has mean alpha(T) mu and per-mode variance
    alpha(T)^2 lambda + std(T)^2: checked on 512 draws of the sampler's own prior (a solver
    that returns its input). The channel means within 5 standard errors (the DC mode's
    variance over 512 HW pixels); each complex mode's |Z|^2 is exponential, so its mean over
    512 draws has relative SE 1/sqrt(512): every mode within 6 SE, their average within 5 SE
    of the average (independent modes)."""
    from pds.method.precondition import Identity
    from pds.runtime.mesh import data_mesh, replicate
    from pds.sampling.grid import time_grid
    from pds.sampling.sampler import build_sampler

    class Prior:
        def init(self, ctx, x):
            return x

        def step(self, ctx, x, interval):
            return x

        def output(self, ctx, x):
            return x

    config = ode_config('dpm_solver_2m', 4, sde='vpsde', prior='gaussian')
    config.sampling.steps = 24
    exp = experiment_from_config(config)
    mesh = data_mesh()
    s = build_sampler(exp.sde, time_grid(1, 1e-3), exp.score_builder, exp.image_shape, 512,
                      mesh, Prior(), prior_mean=exp.prior_mean, prior_spectrum=exp.prior_spectrum)
    x = np.asarray(s(replicate(exp.variables, mesh), replicate(Identity(), mesh), 0), np.float64)
    alpha, std = (float(v) for v in exp.sde.marginal_prob(np.float32(1.0), np.float32(1.0)))
    want = alpha**2 * exp.prior_spectrum + std**2
    se_mean = np.sqrt(want[0, 0] / (512 * 256))
    np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), alpha * np.asarray(exp.field.mean),
                               atol=5 * float(se_mean.max()))
    spec = np.fft.rfft2(x - x.mean(axis=0), axes=(1, 2), norm='ortho')
    rel = np.mean(np.abs(spec) ** 2, axis=0)[1:, 1:-1] / want[1:, 1:-1] - 1  # complex modes
    se = 1 / np.sqrt(512)
    assert abs(rel.mean()) < 5 * se / np.sqrt(rel.size), rel.mean()
    assert np.all(np.abs(rel) < 6 * se), np.abs(rel).max()


# --- EDM's stochastic sampler (churn) and DDIM ------------------------------------------------

def churn_config(steps: int, sde: str = 'vesde', s_churn: float = 40.0, s_tmin: float = 0.05,
                 s_tmax: float = 10.0, s_noise: float = 1.0):
    """edm_stochastic on the 16x16 field (sigma 0.01 -> 20 for VE); the churn range
    [s_tmin, s_tmax] leaves the first and the last steps out."""
    config = ode_config('edm_stochastic', steps, sde)
    edm = config.sampling.edm
    edm.s_churn, edm.s_tmin, edm.s_tmax, edm.s_noise = s_churn, s_tmin, s_tmax, s_noise
    return config


def churn_moments(steps: int, sde: str = 'vesde', **edm):
    config = churn_config(steps, sde, **edm)
    return population_moments(config, experiment_from_config(config))


@pytest.mark.parametrize('sde', [VESDE(0.01, 20.0, 10), VPSDE(N=30), subVPSDE(N=30)])
def test_time_of_sigma_inverts_sigma_of_t(sde):
    """t(sigma(t)) = t in closed form, inside [eps, T] and above sigma(T) (churn's t-hat > T).
    Tolerance: t's error is |dt / d log sigma| times sigma's relative float32 error. VE:
    dt / d log sigma = 1 / log(sigma_max / sigma_min) = 0.13, sigma good to ~1e-6. VP, subVP:
    dt / d log sigma ~ 2 t at small t, where sigma loses up to ~1e-3 to the cancellation in
    1 - alpha^2 (alpha ~ 1 - beta_0 t / 2): ~2e-6 at t = 1e-3; at most ~0.2 elsewhere, with
    sigma good to ~1e-6. atol = rtol = 1e-5 leaves a factor of 5 or more (measured: 2.2e-7)."""
    from pds.sampling.denoiser import time_of_sigma

    t = np.concatenate([np.linspace(1e-3, 1.0, 41), [1.05, 1.2]]).astype(np.float32)
    sigma = sigma_of_t(sde, t).astype(np.float32)
    np.testing.assert_allclose(np.asarray(time_of_sigma(sde, sigma)), t, rtol=1e-5, atol=1e-5)


@pytest.mark.default_codegen
@pytest.mark.parametrize('sde,steps', [('vesde', 5), ('vpsde', 24)])  # VP: N > beta_max
def test_edm_stochastic_without_churn_is_edm_heun_bit_for_bit(sde, steps):
    from pds.runtime.mesh import data_mesh, replicate
    from pds.sampling.sampler import build_sampler

    outs = []
    for config in (ode_config('edm_heun', steps, sde), churn_config(steps, sde, s_churn=0.0)):
        exp = experiment_from_config(config)
        mesh = data_mesh()
        s = build_sampler(exp.sde, exp.grid, exp.score_builder, exp.image_shape, 4, mesh,
                          solver_from_config(config, exp.sde), prior_mean=exp.prior_mean)
        outs.append(np.asarray(s(replicate(exp.variables, mesh),
                                 replicate(exp.precond, mesh), seed=7)))
    assert np.array_equal(outs[0], outs[1])
    assert np.all(np.isfinite(outs[0]))


def test_churn_zero_moments_are_edm_heun_moments(x64):
    """The step-by-step propagation (churn 0: every step affine without noise) against the
    whole-run probe of the ODE path, in float64 (2.2e-16 per operation). 12 steps of a few
    tens of operations each give a few hundred ulps (~1e-13); the whole-run probe's y(1) - y(0)
    loses |b| / |a| ulps more on the DC mode (mean b ~ 8 against its gain a ~ 0.16). 1e-11
    leaves a factor 100."""
    heun, churn0 = moments('edm_heun', 12), churn_moments(12, s_churn=0.0)
    np.testing.assert_allclose(churn0.var, heun.var, rtol=1e-11)
    np.testing.assert_allclose(churn0.mean, heun.mean, rtol=1e-11, atol=1e-11)
    assert churn0.nfe == heun.nfe == 23


def band_log_standard_errors(h: int, w: int, channels: int, n: int) -> dict[str, float]:
    """Standard error of the log of ``band_variance_ratios(var, spectrum, n)`` (bias-corrected)
    for n Gaussian samples: the band's mean of log(s(k) / V(k)) over full-spectrum entries,
    where k and -k are one sample variance (a group of 2 with d = 2 (n - 1) real dof) and a
    self-conjugate mode is a group of 1 (d = n - 1); Var log(chi2_d / d) = trigamma(d / 2)."""
    from scipy.special import polygamma

    from pds.analytic.fd import BANDS, band_index

    ky, kx = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
    group = np.minimum(ky * w + kx, ((-ky) % h) * w + (-kx) % w)
    out = {}
    for b, name in enumerate(BANDS):
        sizes = np.bincount(group[band_index(h, w) == b])
        sizes = sizes[sizes > 0]
        d = np.where(sizes == 1, n - 1, 2 * (n - 1))
        var = channels * np.sum(sizes**2 * polygamma(1, d / 2)) / (channels * sizes.sum()) ** 2
        out[name] = float(np.sqrt(var))
    return out


@pytest.mark.slow
@pytest.mark.parametrize('sde,steps,s_churn', [('vesde', 8, 40.0), ('vpsde', 24, 6.0)])
def test_churn_moments_agree_with_the_sampler(sde, steps, s_churn):
    """EDM's stochastic sampler against its step-by-step exact moments, on 128 samples: as
    test_exact_moments_agree_with_the_sampler, the sampled unbiased FD within 4 standard errors
    of the ring-pooled exact FD; and each band's bias-corrected geometric-mean variance ratio
    within 4.5 standard errors of the exact one (3 bands: a false alarm every ~50,000 runs).
    The high band's ratio tells churn from none by more than 8 standard errors, so a wrong
    churn noise or t-hat would show."""
    from pds.analytic.fd import band_variance_ratios

    config = churn_config(steps, sde, s_churn=s_churn)
    exp = experiment_from_config(config)
    exact = population_moments(config, exp)
    res = sample_rounds(exp, solver_from_config(config, exp.sde), config, 128, 64)
    assert res.nfe == exact.nfe
    h, w, c = exp.image_shape
    spectrum = exp.field.spectrum(h, w)
    fd = res.moments.unbiased_frechet_distance(spectrum)
    se = res.moments.unbiased_fd_standard_error(spectrum)
    assert abs(fd - exact.ring_pooled_fd()) < 4 * se, (fd, se, exact.ring_pooled_fd())
    sampled = band_variance_ratios(res.moments.mean_and_variance()[1], spectrum, 128)
    band_se = band_log_standard_errors(h, w, c, 128)
    z = {b: np.log(sampled[b] / exact.band_ratios[b]) / band_se[b] for b in band_se}
    assert all(abs(v) < 4.5 for v in z.values()), (z, sampled, exact.band_ratios)
    plain = churn_moments(steps, sde, s_churn=0.0).band_ratios['high']
    assert abs(np.log(plain / exact.band_ratios['high'])) > 8 * band_se['high']


def test_churn_reaches_the_floor_as_nfe_grows():
    """With the exact score the churned sampler (S_churn 40) converges: its population FD
    falls with the step count (gamma = min(40 / N, sqrt(2) - 1) shrinks and the Heun steps
    shorten: 4.2 at 8 steps, 0.30, 0.042, 0.0076, 8.5e-4, 4.3e-5 at 256) and ends below the
    50k-sample floor (7.8e-4; edm_heun gets there by 64 steps)."""
    fds = [churn_moments(n).frechet_distance for n in (8, 16, 32, 64, 128, 256)]
    assert np.all(np.diff(fds) < 0), fds
    spectrum = experiment_from_config(churn_config(8)).field.spectrum(16, 16)
    assert fds[-1] < expected_floor(spectrum), (fds, expected_floor(spectrum))


@pytest.mark.parametrize('field,value,allowed', [
    ('s_churn', -1.0, '>= 0'), ('s_noise', 0.0, '> 0'), ('s_tmin', 60.0, 'at most'),
    ('s_tmax', float('inf'), 'finite')])
def test_bad_churn_fields(field, value, allowed):
    config = churn_config(4)
    config.sampling.edm[field] = value
    with pytest.raises(ConfigError, match=rf'sampling\.edm\.{field}=.*{allowed}'):
        solver_from_config(config, VESDE())


def test_no_preconditioner_colours_the_churn():
    config = churn_config(4)
    config.sampling.precondition = 'pds'
    with pytest.raises(ConfigError, match=r"sampling.precondition.*may not colour EDM's churn"):
        solver_from_config(config, VESDE())
