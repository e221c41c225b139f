"""SDE formulas against closed forms and independent numerical integration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from pds.method.sde import VESDE, VPSDE, subVPSDE

X = jnp.ones((3, 4, 4, 2))
T = jnp.array([0.0, 0.3, 0.9])
EPS32 = float(np.finfo(np.float32).eps)
LOG_RATIO = np.log(5000.0)  # sigma(t) = 0.01 * exp(t log 5000) in float32: ~t log 5000 eps32


def test_ve_diffusion_is_derivative_of_marginal_variance():
    sde = VESDE(0.01, 50.0, 1000)
    _, g = sde.sde(X, T)
    dvar = jax.vmap(jax.grad(lambda t: sde.marginal_prob(X[:1], t[None])[1][0] ** 2))(T)
    np.testing.assert_allclose(g**2, dvar, rtol=4 * LOG_RATIO * EPS32)  # squared: twice sigma's
    np.testing.assert_allclose(sde.marginal_prob(X, T)[1], 0.01 * 5000.0**T,
                               rtol=2 * LOG_RATIO * EPS32)


@pytest.mark.parametrize('cls', [VPSDE, subVPSDE])
def test_vp_marginals_solve_the_moment_odes(cls):
    """mean' = -beta/2 mean and var' = -beta var + g^2, integrated numerically from x0 = 1."""
    sde = cls(0.1, 20.0, 1000)

    def rhs(t, y):
        tt = jnp.array([t], jnp.float32)
        beta = float(sde.beta(tt)[0])
        g = float(sde.sde(jnp.ones((1, 1, 1, 1)), tt)[1][0])
        return [-0.5 * beta * y[0], -beta * y[1] + g**2]

    sol = solve_ivp(rhs, (0.0, 0.9), [1.0, 0.0], t_eval=[0.3, 0.9], rtol=1e-8, atol=1e-10)
    mean, std = sde.marginal_prob(jnp.ones((2, 1, 1, 1)), jnp.array([0.3, 0.9]))
    # float32 beta in the RHS and exp of exponents up to ~4 in the closed form: ~8 eps32 (x8);
    # solve_ivp's 1e-8 is below that
    np.testing.assert_allclose(mean.ravel(), sol.y[0], rtol=64 * EPS32)
    np.testing.assert_allclose(std**2, sol.y[1], rtol=64 * EPS32)


def test_ve_discretization_is_smld_ladder():
    sde = VESDE(0.01, 50.0, 10)
    sig = np.exp(np.linspace(np.log(0.01), np.log(50.0), 10))
    f, G = sde.discretize(X[:2], jnp.array([1.0, 0.0]))
    # float32 exp of exponents up to |log 0.01| ~ 4.6: ~5 eps32, x1.2 by sigma_i^2 - sigma_{i-1}^2
    tol = 16 * EPS32
    np.testing.assert_allclose(G, [np.sqrt(sig[9] ** 2 - sig[8] ** 2), sig[0]], rtol=tol)
    assert np.all(f == 0)
    # an explicit ladder index wins over the time
    _, G5 = sde.discretize(X[:1], jnp.array([1.0]), index=5)
    np.testing.assert_allclose(G5, [np.sqrt(sig[5] ** 2 - sig[4] ** 2)], rtol=tol)


def test_vp_discretization_is_ddpm_step():
    sde = VPSDE(0.1, 20.0, 100)
    betas = np.linspace(0.1 / 100, 20.0 / 100, 100)
    x = 2.0 * X[:1]
    f, G = sde.discretize(x, jnp.array([0.5]))
    i = int(0.5 * 99)
    # sqrt(alpha) - 1 cancels: ~an ulp of 1 over |sqrt(alpha) - 1| ~ beta / 2
    np.testing.assert_allclose(f, (np.sqrt(1 - betas[i]) - 1) * 2.0,
                               rtol=EPS32 / (1 - np.sqrt(1 - betas[i])))
    np.testing.assert_allclose(G, [np.sqrt(betas[i])], rtol=4 * EPS32)  # linspace entry, sqrt


def test_subvp_discretize_is_euler():
    sde = subVPSDE(0.1, 20.0, 50)
    t = jnp.array([0.4])
    drift, g = sde.sde(X[:1], t)
    f, G = sde.discretize(X[:1], t)
    # one float32 product by a rounded dt (or sqrt(dt)): 2 half-ulps
    np.testing.assert_allclose(f, drift / 50, rtol=2 * EPS32)
    np.testing.assert_allclose(G, g * np.sqrt(1 / 50), rtol=2 * EPS32)


@pytest.mark.parametrize('cls', [VESDE, VPSDE, subVPSDE])
def test_reverse_and_probability_flow(cls):
    sde = cls(N=20)
    score = lambda x, t: -x
    t = jnp.array([0.5])
    x = 0.7 * X[:1]
    drift, g = sde.sde(x, t)
    rd, rg = sde.reverse(score).sde(x, t)
    # the same few float32 ops as the reference, up to fusion: ~2 eps32
    np.testing.assert_allclose(rd, drift + g[0] ** 2 * x, rtol=2 * EPS32)
    np.testing.assert_allclose(rg, g)
    pd, pg = sde.reverse(score, probability_flow=True).sde(x, t)
    np.testing.assert_allclose(pd, drift + 0.5 * g[0] ** 2 * x, rtol=2 * EPS32)
    assert np.all(pg == 0)
    f, G = sde.discretize(x, t)
    rf, _ = sde.reverse(score).discretize(x, t)
    np.testing.assert_allclose(rf, f + G[0] ** 2 * x, rtol=2 * EPS32)


def test_prior_logp_is_normal_density():
    sde = VESDE(0.01, 3.0, 10)
    z = jnp.asarray(np.random.default_rng(0).normal(size=(2, 2, 2, 1)), jnp.float32)
    from scipy.stats import norm

    expected = norm.logpdf(np.asarray(z), scale=3.0).reshape(2, -1).sum(1)
    # float32 sum of 8 same-sign terms: <= 8 eps32 relative
    np.testing.assert_allclose(sde.prior_logp(z), expected, rtol=8 * EPS32)
