"""The Gaussian-field mixture: exact score against autodiff and a dense log-density, posterior,
exact sampling and moments, config validation, wiring, and a sampler run that recovers the
mixture weights."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from configs.analytic.mixture_32 import get_config
from pds.analytic.fd import band_index
from pds.analytic.fd import frechet_distance as field_frechet_distance
from pds.analytic.gaussian_field import GaussianField, exact_score_fn
from pds.analytic.mixture import (
    GaussianMixtureField,
    band_variance_ratios,
    frechet_noise_floor,
    mixture_from_config,
    mixture_posterior_fn,
    mixture_report,
    mixture_score_fn,
)
from pds.method.sde import VESDE, VPSDE
from pds.runtime.errors import ConfigError

MIX = GaussianMixtureField(
    (GaussianField((0.65, 0.45, 0.35), (0.04, 0.05, 0.03), 1.0, 0.75),
     GaussianField((0.35, 0.45, 0.65), (0.03, 0.03, 0.03), 1.0, 1.0),
     GaussianField((0.45, 0.6, 0.4), (0.02, 0.02, 0.02), 2.0, 1.5)),
    (0.5, 0.3, 0.2))
SDES = [VESDE(0.01, 350.0, 1000), VPSDE(0.1, 20.0, 1000)]


def diffused(sde, x0, t, seed=1):
    """x_t = a x_0 + s z and (a, s) per example."""
    a, s = sde.marginal_prob(jnp.ones((len(x0), 1, 1, 1), x0.dtype), t)
    a, s = a.reshape(-1), jnp.reshape(s, (-1,))
    z = np.random.default_rng(seed).standard_normal(x0.shape)
    return a[:, None, None, None] * x0 + s[:, None, None, None] * z, a, s


@pytest.mark.parametrize('sde', SDES, ids=['ve', 'vp'])
@pytest.mark.parametrize('hw', [(8, 7), (6, 8)], ids=['odd_w', 'even_w'])
def test_score_is_the_gradient_of_the_log_density(sde, hw):
    """float64, two examples at each of t = 1e-5, 0.02, 0.5, 0.98 (sigma 0.01 to ~300 for VE):
    relative error per example below 1e-4 (measured: ~1e-15)."""
    h, w = hw
    t = jnp.asarray(np.repeat([1e-5, 0.02, 0.5, 0.98], 2))
    with jax.enable_x64(True):
        variables = MIX.variables(h, w, jnp.float64)
        x0 = jnp.asarray(MIX.sample(np.random.default_rng(0), len(t), h, w))
        x, a, s = diffused(sde, x0, t)
        assert x.dtype == jnp.float64 and variables['spectra'].dtype == jnp.float64
        got = jax.jit(mixture_score_fn(sde, variables))(x, t)
        want = jax.jit(jax.grad(lambda v: MIX.log_density(v, a, s).sum()))(x)
        err = np.asarray(jnp.linalg.norm((got - want).reshape(len(t), -1), axis=1)
                         / jnp.linalg.norm(want.reshape(len(t), -1), axis=1))
    assert err.max() < 1e-4, err


def dense_log_density(mix, x, a, s):
    """log p_t by dense covariances in the pixel basis (scipy), channels independent."""
    h, w, c = x.shape[1:]
    u = np.kron(np.fft.fft(np.eye(h), norm='ortho'), np.fft.fft(np.eye(w), norm='ortho'))
    out = np.zeros((len(x), mix.num_components))
    for k, comp in enumerate(mix.components):
        lam = comp.spectrum(h, w)
        out[:, k] = np.log(mix.weights[k])
        for ch in range(c):
            cov = np.real(u.conj().T @ np.diag(a**2 * lam[:, :, ch].ravel()) @ u)
            cov += s**2 * np.eye(h * w)
            out[:, k] += multivariate_normal(np.full(h * w, a * comp.mean[ch]), cov).logpdf(
                x[..., ch].reshape(len(x), -1))
    return logsumexp(out, axis=1)


@pytest.mark.parametrize('hw', [(4, 5), (4, 6), (5, 3)])
def test_log_density_matches_a_dense_computation(hw):
    h, w = hw
    x0 = MIX.sample(np.random.default_rng(2), 5, h, w)
    for a, s in ((1.0, 0.0), (1.0, 0.3), (0.7, 0.5)):
        x = a * x0 + s * np.random.default_rng(3).standard_normal(x0.shape)
        with jax.enable_x64(True):
            got = np.asarray(jax.jit(MIX.log_density)(jnp.asarray(x), a, s))
        np.testing.assert_allclose(got, dense_log_density(MIX, x, a, s), rtol=1e-10)


def test_float32_score_is_stable_from_sigma_min_to_sigma_max():
    """At 32 x 32 the float32 score (the sampler's dtype) matches float64, without NaNs, at
    sigma 0.01 (one component's logit thousands above the others) and sigma 350."""
    sde = SDES[0]
    h = w = 32
    t = np.array([0.0, 1e-5, 0.3, 0.6, 1.0])
    x0 = MIX.sample(np.random.default_rng(4), len(t), h, w)
    with jax.enable_x64(True):
        x, _, _ = diffused(sde, jnp.asarray(x0), jnp.asarray(t))
        want = np.asarray(jax.jit(mixture_score_fn(sde, MIX.variables(h, w, jnp.float64)))(
            x, jnp.asarray(t)))
        x = np.asarray(x)
    got = np.asarray(jax.jit(mixture_score_fn(sde, MIX.variables(h, w)))(
        jnp.asarray(x, jnp.float32), jnp.asarray(t, jnp.float32)))
    assert got.dtype == np.float32 and np.isfinite(got).all()
    for b in range(len(t)):
        np.testing.assert_allclose(got[b], want[b], rtol=0, atol=1e-4 * np.abs(want[b]).max())


def test_posterior_weights_sum_to_one():
    h = w = 8
    variables = MIX.variables(h, w)
    t = jnp.asarray(np.repeat([1e-5, 0.3, 0.7, 1.0], 4), jnp.float32)
    x0 = MIX.sample(np.random.default_rng(5), len(t), h, w)
    for sde in SDES:
        x, _, _ = diffused(sde, jnp.asarray(x0, jnp.float32), t)
        post = np.asarray(jax.jit(mixture_posterior_fn(sde, variables))(
            x.astype(jnp.float32), t))
        assert post.shape == (len(t), 3) and np.isfinite(post).all() and (post >= 0).all()
        np.testing.assert_allclose(post.sum(axis=1), 1.0, atol=1e-6)
    post = MIX.posterior(np.concatenate([x0, 100.0 * x0]))  # also far from every component
    assert np.isfinite(post).all()
    np.testing.assert_allclose(post.sum(axis=1), 1.0, atol=1e-12)


def test_identical_components_reduce_to_the_field():
    field = MIX.components[1]
    mix = GaussianMixtureField((field, field), (0.3, 0.7))
    h, w = 8, 6
    t = jnp.asarray(np.repeat([1e-5, 0.5, 1.0], 3), jnp.float32)
    x0 = field.sample(np.random.default_rng(6), len(t), h, w)
    for sde in SDES:
        x, _, _ = diffused(sde, jnp.asarray(x0, jnp.float32), t)
        x = x.astype(jnp.float32)
        got = np.asarray(jax.jit(mixture_score_fn(sde, mix.variables(h, w)))(x, t))
        want = np.asarray(jax.jit(exact_score_fn(sde, field.variables(h, w)))(x, t))
        for b in range(len(t)):
            np.testing.assert_allclose(got[b], want[b], rtol=1e-5,
                                       atol=1e-6 * np.abs(want[b]).max())
        post = np.asarray(jax.jit(mixture_posterior_fn(sde, mix.variables(h, w)))(x, t))
        np.testing.assert_allclose(post, np.tile([0.3, 0.7], (len(t), 1)), rtol=1e-5)
    # one channel: the mixture's Frechet distance is the field's (pds/analytic/fd.py)
    one = GaussianField((0.4,), (0.05,), 1.0, 1.2)
    mix1 = GaussianMixtureField((one, one), (0.5, 0.5))
    x = 0.9 * one.sample(np.random.default_rng(7), 20, h, w) + 0.05
    assert mix1.frechet_distance(x) == pytest.approx(field_frechet_distance(x, one), rel=1e-10)


def test_sampling_frequencies_spectra_and_moments():
    h, w, n = 8, 8, 6000
    x, labels = MIX.sample_with_labels(np.random.default_rng(8), n, h, w)
    assert x.shape == (n, h, w, 3) and x.dtype == np.float64
    freq = np.bincount(labels, minlength=3) / n
    pi = np.asarray(MIX.weights)
    assert np.all(np.abs(freq - pi) < 4 * np.sqrt(pi * (1 - pi) / n)), freq
    # the components are far apart: the t = 0 posterior assigns exact samples correctly
    assert np.mean(np.argmax(MIX.posterior(x), axis=1) == labels) > 0.999
    for k in range(3):
        ratios = band_variance_ratios(x[labels == k], MIX.spectra(h, w)[k])
        n_k = np.sum(labels == k)
        for name, r in ratios.items():  # bias-corrected: 1 in expectation; sd ~1 / sqrt(n_k)
            assert abs(r - 1) < 4 / np.sqrt(n_k), (k, name, r)
    mom = MIX.exact_moments(h, w)
    spec = np.fft.fft2(x - mom['mean'], axes=(1, 2), norm='ortho')
    assert np.all(np.abs(spec.mean(0)[0, 0].real) < 4 * np.sqrt(
        np.diag(mom['dc_covariance']) / n))
    np.testing.assert_allclose(np.cov(spec[:, 0, 0].real, rowvar=False), mom['dc_covariance'],
                               rtol=0.08, atol=0.08 * np.abs(mom['dc_covariance']).max())
    var = (np.abs(spec) ** 2).mean(0)
    off = band_index(h, w) >= 0
    np.testing.assert_allclose(var[off], mom['spectrum'][off], rtol=0.12)
    report = mixture_report(x[:1000], MIX, floor_draws=5, seed=1)
    assert report['frechet_distance'] < report['noise_floor'] + 5 * report['noise_floor_std']
    assert np.all(np.abs(report['weights_z']) < 4)


def test_frechet_distance_separates_wrong_weights():
    h, w, n = 8, 8, 400
    wrong = dataclasses.replace(MIX, weights=(0.2, 0.3, 0.5))
    fd_right = MIX.frechet_distance(MIX.sample(np.random.default_rng(9), n, h, w))
    fd_wrong = MIX.frechet_distance(wrong.sample(np.random.default_rng(9), n, h, w))
    floor, std = frechet_noise_floor(MIX, n, h, w, draws=6)
    assert abs(fd_right - floor) < 5 * std and fd_wrong > floor + 10 * std


def _field(config, name, value):
    config.model[name] = value
    return config


@pytest.mark.parametrize('name, value, field', [
    ('mixture_weights', (0.5, 0.6, 0.2), 'model.mixture_weights'),
    ('mixture_weights', (1.2, -0.1, -0.1), 'model.mixture_weights'),
    ('mixture_weights', (1.0,), 'model.mixture_weights'),
    ('mixture_variances', (0.04, -0.03, 0.02), 'model.mixture_variances'),
    ('mixture_variances', (0.04, 0.03), 'model.mixture_variances'),
    ('mixture_means', ((0.5, 0.5, 0.5), (0.5, 0.5), (0.4, 0.4, 0.4)), 'model.mixture_means'),
    ('mixture_betas', (1.0, 1.0), 'model.mixture_betas'),
    ('mixture_k0', (1.0, 0.0, 1.0), 'model.mixture_k0'),
])
def test_bad_inputs_name_the_config_field(name, value, field):
    with pytest.raises(ConfigError) as err:
        mixture_from_config(_field(get_config(), name, value))
    assert err.value.field == field and field in str(err.value)


def test_five_components_are_refused():
    config = get_config()
    m = config.model
    m.mixture_weights, m.mixture_means = (0.2,) * 5, ((0.5, 0.5, 0.5),) * 5
    m.mixture_variances, m.mixture_k0, m.mixture_betas = (0.04,) * 5, (1.0,) * 5, (1.0,) * 5
    with pytest.raises(ConfigError) as err:
        mixture_from_config(config)
    assert err.value.field == 'model.mixture_weights'
    f = MIX.components[0]
    with pytest.raises(ConfigError, match=r'model\.mixture_weights'):
        GaussianMixtureField((f,) * 5, (0.2,) * 5)
    with pytest.raises(ConfigError, match=r'model\.mixture_variances'):
        GaussianMixtureField((f, GaussianField((0.5,) * 3, (0.04, -0.01, 0.04))), (0.5, 0.5))


@pytest.mark.slow
def test_config_pipeline_and_experiment():
    from pds.data.pipelines import array_source, get_batches
    from pds.experiment.assemble import experiment_from_config, stats_images

    config = get_config()
    config.data.image_size = 8
    config.sampling.precondition = 'none'
    mix = mixture_from_config(config)
    assert mix.weights == (0.5, 0.3, 0.2) and mix.num_components == 3
    assert [c.beta for c in mix.components] == [0.75, 1.0, 1.5]
    config.data.centered = True
    centered = mixture_from_config(config)
    np.testing.assert_allclose(centered.components[1].mean, 2 * np.array((0.35, 0.45, 0.65)) - 1)
    np.testing.assert_allclose(centered.components[2].variance, 4 * 0.02)
    config.data.centered = False

    batch = next(get_batches(config, 'eval', batch_size=4, process_index=0, process_count=1))
    one = array_source(config, 'eval', config.seed).read([2])
    assert batch.shape == (4, 8, 8, 3) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[2], one[0])
    assert stats_images(config, 3).shape == (3, 8, 8, 3)

    exp = experiment_from_config(config)
    assert exp.field is None and exp.mixture == mix
    x = jnp.asarray(mix.sample(np.random.default_rng(0), 2, 8, 8), jnp.float32)
    score = exp.score_builder(exp.sde, exp.variables)(x, jnp.full((2,), 0.5))
    assert score.shape == x.shape and np.isfinite(np.asarray(score)).all()


@pytest.mark.slow
@pytest.mark.optimized
def test_sampler_recovers_the_mixture_weights():
    """Reverse diffusion + Langevin (2000 iterations, no PDS) on the mixture_32 config at
    16 x 16: the fraction of samples assigned to each component matches pi within 3
    binomial standard errors. Measured (seed 42, 128 samples): weights 0.461 / 0.359 / 0.180
    (z = -0.88, +1.47, -0.57); at 20 iterations the same sampler puts 92% of 256 samples in
    the rough component and none in the smooth one."""
    from pds.experiment.assemble import experiment_from_config
    from pds.experiment.rounds import sample_rounds
    from pds.sampling.solver import solver_from_config

    config = get_config()
    config.data.image_size = 16
    config.sampling.precondition = 'none'
    config.sampling.steps = 2000
    config.sampling.progress_every = 10**6
    n = 128
    exp = experiment_from_config(config)
    rows = []
    sample_rounds(exp, solver_from_config(config, exp.sde), config, n, n,
                  lambda r: rows.append(r.rows))
    report = mixture_report(np.concatenate(rows), exp.mixture)
    pi = np.asarray(exp.mixture.weights)
    se = np.sqrt(pi * (1 - pi) / n)
    assert np.all(np.abs(np.asarray(report['weights']) - pi) < 3 * se), report['weights']
    for ratios in report['band_variance_ratio']:
        assert all(0.8 < r < 1.3 for r in ratios.values()), report['band_variance_ratio']
