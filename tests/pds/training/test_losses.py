"""Losses against a direct numpy computation on a fixed batch, with a linear stub network."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pds.method.sde import VESDE, VPSDE, subVPSDE
from pds.runtime.errors import ConfigError
from pds.training import losses

B, H, W, C = 6, 4, 4, 2


class Linear(nn.Module):
    """out = a x + b log(1 + label) (a, b scalars): enough to check every formula."""

    @nn.compact
    def __call__(self, x, labels, train=False):
        a = self.param('a', lambda _: jnp.asarray(-0.7, jnp.float32))
        b = self.param('b', lambda _: jnp.asarray(0.3, jnp.float32))
        lab = jnp.log1p(jnp.asarray(labels, jnp.float32)).reshape(-1, 1, 1, 1)
        return a * x + b * lab


VARIABLES = {'params': {'a': jnp.asarray(-0.7), 'b': jnp.asarray(0.3)}}
A, BB = -0.7, 0.3


def _batch():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (B, H, W, C)).astype(np.float32)


def _keys():
    return jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(5), jnp.arange(B))


def _net(x, labels):
    return A * x + BB * np.log1p(np.asarray(labels, np.float64)).reshape(-1, 1, 1, 1)


def _reduce(v, reduce_mean):
    v = v.reshape(len(v), -1)
    return v.mean(-1) if reduce_mean else 0.5 * v.sum(-1)


def _marginal(sde, x, t):
    """(mean, std) in float64, from the SDE's formulas (not its code)."""
    if isinstance(sde, VESDE):
        return x, sde.sigma_min * (sde.sigma_max / sde.sigma_min) ** t
    lmc = -0.25 * t**2 * (sde.beta_max - sde.beta_min) - 0.5 * t * sde.beta_min
    a = np.exp(lmc).reshape(-1, 1, 1, 1)
    std = 1 - np.exp(2 * lmc) if isinstance(sde, subVPSDE) else np.sqrt(1 - np.exp(2 * lmc))
    return a * x, std


def _g2(sde, t):
    if isinstance(sde, VESDE):
        s = sde.sigma_min * (sde.sigma_max / sde.sigma_min) ** t
        return s**2 * 2 * (np.log(sde.sigma_max) - np.log(sde.sigma_min))
    beta = sde.beta_min + t * (sde.beta_max - sde.beta_min)
    if isinstance(sde, subVPSDE):
        return beta * (1 - np.exp(-2 * sde.beta_min * t - (sde.beta_max - sde.beta_min) * t**2))
    return beta


def _score(sde, x_t, t):
    """score_sde's score of the stub: VE net(x, sigma); VP/subVP -net(x, 999 t) / std."""
    if isinstance(sde, VESDE):
        return _net(x_t, _marginal(sde, x_t, t)[1])
    std = _marginal(sde, x_t, t)[1].reshape(-1, 1, 1, 1)
    return -_net(x_t, 999 * t) / std


SDES = [VESDE(0.01, 20.0, 100), VPSDE(0.1, 20.0, 100), subVPSDE(0.1, 20.0, 100)]


@pytest.mark.parametrize('sde', SDES, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize('reduce_mean', [False, True])
@pytest.mark.parametrize('likelihood_weighting', [False, True])
def test_continuous_dsm(sde, reduce_mean, likelihood_weighting):
    x, keys = _batch(), _keys()
    fn = losses.get_loss_fn(sde, Linear(), train=True, reduce_mean=reduce_mean,
                            continuous=True, likelihood_weighting=likelihood_weighting)
    got = np.asarray(jax.jit(fn)(VARIABLES, jnp.asarray(x), keys))
    t = np.asarray(losses.draw_time(keys, 1e-5), np.float64)
    assert np.all((t >= 1e-5) & (t <= 1.0))
    z = np.asarray(losses.draw_noise(keys, (H, W, C)), np.float64)
    mean, std = _marginal(sde, x.astype(np.float64), t)
    std = std.reshape(-1, 1, 1, 1)
    x_t = mean + std * z
    score = _score(sde, x_t, t)
    if likelihood_weighting:
        want = _reduce((score + z / std) ** 2, reduce_mean) * _g2(sde, t)
    else:
        want = _reduce((score * std + z) ** 2, reduce_mean)
    np.testing.assert_allclose(got, want, rtol=2e-4)


@pytest.mark.parametrize('reduce_mean', [False, True])
def test_smld(reduce_mean):
    sde = VESDE(0.01, 20.0, 50)
    x, keys = _batch(), _keys()
    fn = losses.get_loss_fn(sde, Linear(), train=True, reduce_mean=reduce_mean,
                            continuous=False)
    got = np.asarray(jax.jit(fn)(VARIABLES, jnp.asarray(x), keys))
    n = np.asarray(losses.draw_label(keys, sde.N))
    assert n.min() >= 0 and n.max() < sde.N
    sigmas = np.exp(np.linspace(np.log(0.01), np.log(20.0), 50))[::-1]  # index 0 = sigma_max
    sigma = sigmas[n].reshape(-1, 1, 1, 1)
    noise = sigma * np.asarray(losses.draw_noise(keys, (H, W, C)), np.float64)
    score = _net(x + noise, n)
    want = _reduce((score + noise / sigma**2) ** 2, reduce_mean) * sigma.ravel() ** 2
    np.testing.assert_allclose(got, want, rtol=2e-4)


@pytest.mark.parametrize('reduce_mean', [False, True])
def test_ddpm(reduce_mean):
    sde = VPSDE(0.1, 20.0, 50)
    x, keys = _batch(), _keys()
    fn = losses.get_loss_fn(sde, Linear(), train=True, reduce_mean=reduce_mean,
                            continuous=False)
    got = np.asarray(jax.jit(fn)(VARIABLES, jnp.asarray(x), keys))
    n = np.asarray(losses.draw_label(keys, sde.N))
    abar = np.cumprod(1 - np.linspace(0.1 / 50, 20.0 / 50, 50))[n].reshape(-1, 1, 1, 1)
    z = np.asarray(losses.draw_noise(keys, (H, W, C)), np.float64)
    x_n = np.sqrt(abar) * x + np.sqrt(1 - abar) * z
    want = _reduce((_net(x_n, n) - z) ** 2, reduce_mean)
    np.testing.assert_allclose(got, want, rtol=2e-4)


def test_per_example_draws_ignore_the_rest_of_the_batch():
    """Example b's loss depends only on its own key and image (any batch split agrees)."""
    sde = VESDE(0.01, 20.0, 100)
    fn = jax.jit(losses.get_loss_fn(sde, Linear(), train=True))
    x, keys = jnp.asarray(_batch()), _keys()
    whole = np.asarray(fn(VARIABLES, x, keys))
    parts = np.concatenate([np.asarray(fn(VARIABLES, x[i:i + 2], keys[i:i + 2]))
                            for i in range(0, B, 2)])
    np.testing.assert_array_equal(whole, parts)


def test_discrete_errors():
    with pytest.raises(ConfigError, match='likelihood_weighting'):
        losses.get_loss_fn(VESDE(), Linear(), True, continuous=False, likelihood_weighting=True)
    with pytest.raises(ConfigError, match='subvpsde'):
        losses.get_loss_fn(subVPSDE(), Linear(), True, continuous=False)
