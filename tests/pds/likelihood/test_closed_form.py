"""Closed forms against dense linear algebra: the field's and the mixture's log-densities at
any noise level, the priors' log-densities, the prior's KL to the field's marginal at T, and
the units."""

import math

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from pds.analytic.gaussian_field import GaussianField
from pds.analytic.mixture import GaussianMixtureField
from pds.likelihood import closed_form, units
from pds.likelihood.priors import make_prior
from pds.method.sde import VESDE, VPSDE, subVPSDE

H, W, C = 4, 4, 2
FIELD = GaussianField((0.3, 0.6), (0.04, 0.03), beta=1.5)
MIX = GaussianMixtureField((FIELD, GaussianField((0.7, 0.4), (0.02, 0.05))), (0.6, 0.4))


def dft_matrix(n: int) -> np.ndarray:
    k = np.arange(n)
    return np.exp(-2j * np.pi * np.outer(k, k) / n) / np.sqrt(n)


def dense_covariance(spectrum: np.ndarray) -> np.ndarray:
    """The (H W C) x (H W C) covariance (pixel-major, channel-minor) of per-mode variances
    spectrum (H, W, C): U^H diag(lambda_c) U per channel, U the orthonormal 2-D DFT."""
    u = np.kron(dft_matrix(H), dft_matrix(W))
    cov = np.zeros((H * W * C, H * W * C))
    for c in range(C):
        block = np.real(u.conj().T @ np.diag(spectrum[:, :, c].reshape(-1)) @ u)
        cov[c::C, c::C] = block
    return cov


def dense_logpdf(x, mean_img, spectrum, a, s):
    cov = a**2 * dense_covariance(spectrum) + s**2 * np.eye(H * W * C)
    mean = (a * np.broadcast_to(mean_img, (H, W, C))).reshape(-1)
    return multivariate_normal(mean, cov).logpdf(x.reshape(len(x), -1))


@pytest.mark.parametrize('a,s', [(1.0, 0.01), (1.0, 20.0), (0.7, 0.5)])
def test_field_log_density_is_the_dense_gaussian(a, s):
    x = FIELD.sample(np.random.default_rng(0), 5, H, W) * a + s * np.random.default_rng(
        1).standard_normal((5, H, W, C))
    want = dense_logpdf(x, np.asarray(FIELD.mean), FIELD.spectrum(H, W), a, s)
    np.testing.assert_allclose(FIELD.log_density_host(x, a, s), want, rtol=1e-10)


@pytest.mark.parametrize('a,s', [(1.0, 0.05), (0.9, 1.0)])
def test_mixture_log_density_is_the_dense_mixture(a, s):
    x = MIX.sample(np.random.default_rng(2), 6, H, W) * a + s * np.random.default_rng(
        3).standard_normal((6, H, W, C))
    parts = [math.log(p) + dense_logpdf(x, np.asarray(c.mean), c.spectrum(H, W), a, s)
             for p, c in zip(MIX.weights, MIX.components)]
    np.testing.assert_allclose(MIX.log_density_host(x, a, s), logsumexp(parts, axis=0),
                               rtol=1e-10)


def test_marginal_scales_match_the_sde():
    """Against the SDE's own formulas in float64 (its log_mean_coeff and sigma are plain
    arithmetic), and its float32 marginal_prob where float32 resolves std (t >= 0.3)."""
    for sde in (VESDE(0.01, 20.0), VPSDE(), subVPSDE()):
        for t in (1e-5, 0.3, 1.0):
            a, s = closed_form.marginal_scales(sde, t)
            if isinstance(sde, VESDE):
                want = (1.0, sde.sigma(np.float64(t)))
            else:
                lmc = sde.log_mean_coeff(np.float64(t))
                var = 1.0 - np.exp(2.0 * lmc)
                want = (np.exp(lmc), var if isinstance(sde, subVPSDE) else np.sqrt(var))
            np.testing.assert_allclose([a, s], want, rtol=1e-12)
            if t >= 0.3:
                mean, std = sde.marginal_prob(jnp.ones((1,)), jnp.full((1,), t))
                np.testing.assert_allclose([a, s], [float(mean[0]), float(std[0])], rtol=1e-5)


@pytest.mark.parametrize('name', ['score_sde', 'mean', 'gaussian'])
def test_prior_log_density_is_the_dense_gaussian(name):
    sde = VESDE(0.01, 3.0)
    mean = FIELD.prior_mean(H, W) if name != 'score_sde' else None
    half = FIELD.half_spectrum(H, W) if name == 'gaussian' else None
    prior = make_prior(name, sde, mean, half)
    x = np.random.default_rng(4).standard_normal((5, H, W, C)) * 3.0
    if name == 'gaussian':
        want = dense_logpdf(x, np.asarray(FIELD.mean), FIELD.spectrum(H, W), 1.0, 3.0)
    else:
        shift = 0.0 if mean is None else mean
        want = multivariate_normal(np.broadcast_to(shift, (H, W, C)).reshape(-1),
                                   9.0 * np.eye(H * W * C)).logpdf(x.reshape(5, -1))
    # the prior's variances are stored in float32: relative error ~6e-8 per term
    np.testing.assert_allclose(prior.logp(x, np), want, rtol=1e-6)
    got32 = np.asarray(prior.logp(jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(got32, want, rtol=1e-5)
    if name == 'score_sde':
        np.testing.assert_allclose(got32, np.asarray(sde.prior_logp(jnp.asarray(x))),
                                   rtol=1e-6)


@pytest.mark.parametrize('name', ['score_sde', 'mean', 'gaussian'])
def test_prior_kl_is_the_dense_gaussian_kl(name):
    sde = VESDE(0.01, 3.0)
    mean = FIELD.prior_mean(H, W) if name != 'score_sde' else None
    half = FIELD.half_spectrum(H, W) if name == 'gaussian' else None
    prior = make_prior(name, sde, mean, half)
    d = H * W * C
    cov_t = dense_covariance(FIELD.spectrum(H, W)) + 9.0 * np.eye(d)
    mean_t = np.broadcast_to(np.asarray(FIELD.mean), (H, W, C)).reshape(-1)
    cov_p = cov_t if name == 'gaussian' else 9.0 * np.eye(d)
    mean_p = np.zeros(d) if mean is None else mean.reshape(-1).astype(np.float64)
    inv = np.linalg.inv(cov_p)
    want = 0.5 * (np.trace(inv @ cov_t) - d + (mean_p - mean_t) @ inv @ (mean_p - mean_t)
                  + np.linalg.slogdet(cov_p)[1] - np.linalg.slogdet(cov_t)[1])
    got = closed_form.prior_kl(FIELD, sde, prior, H, W)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)  # float32 prior variances
    if name == 'gaussian':
        assert abs(got) < 1e-5


def test_units_follow_score_sde():
    config = ml_collections.ConfigDict({'data': {'dataset': 'CIFAR10', 'centered': True}})
    assert units.dequantised(config) and units.bpd_offset(config) == 7.0
    config.data.centered = False
    assert units.bpd_offset(config) == 8.0
    config.data.dataset = 'gaussian_field'
    assert not units.dequantised(config) and units.bpd_offset(config) == 0.0
    logp = np.array([-100.0, 50.0])
    np.testing.assert_allclose(units.bits_per_dim(logp, 10, 8.0),
                               [10.0 / math.log(2) + 8.0, -5.0 / math.log(2) + 8.0])
    np.testing.assert_allclose(units.nats_per_dim(logp, 10), [10.0, -5.0])
