"""One-step formulas: each predictor and corrector against a value computed by hand (float64
numpy) on a tiny input, with the linear score s(x, t) = -x and fixed noise draws."""

import jax.numpy as jnp
import numpy as np
import pytest

from pds.method.pds_preconditioner import make_preconditioner
from pds.method.precondition import Identity
from pds.method.sde import VESDE, VPSDE
from pds.sampling.context import StepEnv
from pds.sampling.correctors import get_corrector
from pds.sampling.predictors import get_predictor

X = np.array([[[[0.5], [-1.0]], [[2.0], [0.25]]], [[[1.5], [0.0]], [[-0.5], [1.0]]]])  # (2,2,2,1)
Z = [np.full_like(X, 0.3) * np.array([1, -1]).reshape(2, 1, 1, 1), X[::-1] * 0.5]
VE, VP = VESDE(0.01, 50.0, 10), VPSDE(0.1, 20.0, 30)
T, INDEX = 0.7, 6
D = np.array([[1.0, 1.25], [1.1, 1.2]])  # a pixel gain: M = diag(D), M M^T = D^2
SNR = 0.2


def env(sde, precond=None, n_steps=1):
    return StepEnv(sde, lambda x, t: -x, precond or Identity(), SNR, n_steps, False, jnp.mean)


def run(kind, name, sde, precond=None, n_steps=1):
    fn = (get_predictor if kind == 'p' else get_corrector)(name)
    x, x_mean = fn(env(sde, precond, n_steps), jnp.asarray(X, jnp.float32),
                   jnp.full((2,), T, jnp.float32), jnp.int32(INDEX),
                   lambda slot: jnp.asarray(Z[slot], jnp.float32))
    return np.asarray(x, np.float64), np.asarray(x_mean, np.float64)


def check(got, want):
    """float32 rounding of a handful of operations on O(1) values."""
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(w).max()))


def ve_sigmas():
    s = np.exp(np.linspace(np.log(0.01), np.log(50.0), 10))
    return s[INDEX], s[INDEX - 1]


def test_reverse_diffusion_ve():
    sigma, prev = ve_sigmas()
    g2 = sigma**2 - prev**2
    x_mean = X - g2 * X  # x - f_rev, f_rev = -G^2 s = G^2 x
    check(run('p', 'reverse_diffusion', VE), (x_mean + np.sqrt(g2) * Z[0], x_mean))


def test_reverse_diffusion_ve_with_pixel_preconditioner():
    sigma, prev = ve_sigmas()
    g2 = sigma**2 - prev**2
    d = D[None, :, :, None]
    precond = make_preconditioner(None, D[None])
    x_mean = X - d**2 * g2 * X  # x - M M^T f_rev
    check(run('p', 'reverse_diffusion', VE, precond),
          (x_mean + np.sqrt(g2) * d * Z[0], x_mean))


def test_reverse_diffusion_vp():
    beta = np.linspace(0.1 / 30, 20.0 / 30, 30)[INDEX]
    f = (np.sqrt(1 - beta) - 1) * X
    x_mean = X - (f - beta * -X)
    check(run('p', 'reverse_diffusion', VP), (x_mean + np.sqrt(beta) * Z[0], x_mean))


def test_euler_maruyama_ve():
    g = 0.01 * (50.0 / 0.01) ** T * np.sqrt(2 * np.log(50.0 / 0.01))
    dt = -1.0 / 10  # score_sde's Euler-Maruyama step: dt = -1/N
    x_mean = X + (0.0 - g**2 * -X) * dt
    check(run('p', 'euler_maruyama', VE), (x_mean + g * np.sqrt(-dt) * Z[0], x_mean))


def test_ancestral_ve_and_vp():
    sigma, prev = ve_sigmas()
    x_mean = X + (sigma**2 - prev**2) * -X
    std = np.sqrt(prev**2 * (sigma**2 - prev**2) / sigma**2)
    check(run('p', 'ancestral_sampling', VE), (x_mean + std * Z[0], x_mean))
    beta = np.linspace(0.1 / 30, 20.0 / 30, 30)[INDEX]
    x_mean = (X + beta * -X) / np.sqrt(1 - beta)
    check(run('p', 'ancestral_sampling', VP), (x_mean + np.sqrt(beta) * Z[0], x_mean))


def norms(v):
    return np.sqrt((v**2).sum(axis=(1, 2, 3)))


@pytest.mark.parametrize('sde', [VE, VP])
def test_langevin_snr_rule(sde):
    a = 1.0 if sde is VE else 1.0 - np.linspace(0.1 / 30, 20.0 / 30, 30)[INDEX]
    grad = -X
    eps = 2 * a * (SNR * norms(Z[0]).mean() / norms(grad).mean()) ** 2  # batch means
    x_mean = X + eps * grad
    check(run('c', 'langevin', sde), (x_mean + np.sqrt(2 * eps) * Z[0], x_mean))


def test_langevin_two_steps_use_two_noise_slots():
    x = X
    for k in range(2):
        grad = -x
        eps = 2 * (SNR * norms(Z[k]).mean() / norms(grad).mean()) ** 2
        x_mean = x + eps * grad
        x = x_mean + np.sqrt(2 * eps) * Z[k]
    check(run('c', 'langevin', VE, n_steps=2), (x, x_mean))


def test_annealed_langevin_ve_with_pixel_preconditioner():
    std = 0.01 * (50.0 / 0.01) ** T
    eps = 2 * (SNR * std) ** 2
    d = D[None, :, :, None]
    x_mean = X + eps * d**2 * -X
    check(run('c', 'ald', VE, make_preconditioner(None, D[None])),
          (x_mean + np.sqrt(2 * eps) * d * Z[0], x_mean))


def test_none_steps_are_identities():
    for kind in 'pc':
        x, x_mean = run(kind, 'none', VE)
        np.testing.assert_array_equal(x, X)
        np.testing.assert_array_equal(x_mean, X)
