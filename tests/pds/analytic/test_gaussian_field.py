"""The exact score of the diffused Gaussian field against autodiff of a dense log-density."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pds.analytic.gaussian_field import GaussianField, exact_score_fn
from pds.method.sde import VESDE, VPSDE, subVPSDE

jax.config.update('jax_enable_x64', False)
H, W = 6, 5
FIELD = GaussianField(mean=(0.5, 0.3), variance=(0.04, 0.09), k0=1.5, beta=1.2)


def dense_covariance(field, h, w):
    """Sigma_c = U^H diag(lambda_c) U with U the orthonormal DFT matrix, built explicitly."""
    fy = np.fft.fft(np.eye(h), norm='ortho')
    fx = np.fft.fft(np.eye(w), norm='ortho')
    u = np.kron(fy, fx)  # acts on row-major (h, w) images
    lam = field.spectrum(h, w)
    return [np.real(u.conj().T @ np.diag(lam[:, :, c].ravel()) @ u) for c in range(lam.shape[2])]


@pytest.mark.parametrize('sde', [VESDE(0.01, 5.0, 10), VPSDE(0.1, 20.0, 10),
                                 subVPSDE(0.1, 20.0, 10)])
def test_exact_score_matches_autodiff(sde):
    covs = dense_covariance(FIELD, H, W)
    t = jnp.array([0.05, 0.5, 1.0])
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(0.4, 0.5, size=(3, H, W, 2)), jnp.float32)
    score = exact_score_fn(sde, FIELD.variables(H, W))(x, t)
    for b in range(3):
        a, s = sde.marginal_prob(jnp.ones((1, 1, 1, 1)), t[b:b + 1])
        a, s = float(a.ravel()[0]), float(s[0])
        for c in range(2):
            cov = jnp.asarray(a**2 * covs[c] + s**2 * np.eye(H * W))
            mu = a * FIELD.mean[c]

            def logp(v, cov=cov, mu=mu):
                d = v - mu
                return -0.5 * d @ jnp.linalg.solve(cov, d)

            want = jax.grad(logp)(x[b, :, :, c].ravel())
            got = score[b, :, :, c].ravel()
            np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-3 * np.abs(want).max())


def test_samples_have_the_field_statistics():
    n = 4000
    x = FIELD.sample(np.random.default_rng(1), n, H, W)
    np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), FIELD.mean, atol=0.02)
    np.testing.assert_allclose(x.var(axis=(0, 1, 2)), FIELD.variance, rtol=0.06)
    emp = np.cov(x[..., 1].reshape(n, -1).T)
    np.testing.assert_allclose(emp, dense_covariance(FIELD, H, W)[1], atol=0.01)


def test_spectrum_normalisation_gives_pixel_variance():
    lam = FIELD.spectrum(32, 16)
    np.testing.assert_allclose(lam.mean(axis=(0, 1)), FIELD.variance, rtol=1e-12)
    np.testing.assert_allclose(lam, lam[::-1][np.r_[-1, :31]][:, np.r_[0, 15:0:-1]], rtol=1e-12)


def test_the_capped_score_caps_the_norm_and_is_exact_under_the_cap():
    import jax.numpy as jnp

    from pds.analytic.gaussian_field import capped_score_builder, exact_score_fn
    from pds.method.sde import VESDE

    field = GaussianField(mean=(0.5,), variance=(0.04,))
    sde = VESDE(0.01, 20.0, 100)
    v = field.variables(8, 8)
    x0 = jnp.asarray(field.sample(np.random.default_rng(0), 4, 8, 8), jnp.float32)
    t = jnp.full((4,), 0.5, jnp.float32)
    std = float(sde.marginal_prob(x0, t)[1][0])
    noisy = x0 + std * jnp.asarray(np.random.default_rng(1).standard_normal(x0.shape),
                                   jnp.float32)
    noisy = noisy.at[2:].multiply(3.0)  # excess noise: the exact norm grows, the cap holds
    exact = np.asarray(exact_score_fn(sde, v)(noisy, t))
    norms = np.sqrt(np.sum(exact**2, axis=(1, 2, 3)))
    kappa = float(np.median(norms)) * std / np.sqrt(64)  # between the two groups' norms
    capped = np.asarray(capped_score_builder(kappa)(sde, v)(noisy, t))
    cap = kappa * np.sqrt(64) / std
    out_norms = np.sqrt(np.sum(capped**2, axis=(1, 2, 3)))
    for b in range(4):
        if norms[b] <= cap:  # under the cap: the exact score itself
            np.testing.assert_array_equal(capped[b], exact[b])
        else:  # over it: the same direction, norm cap (float32 rounding of 64 terms)
            np.testing.assert_allclose(out_norms[b], cap, rtol=1e-5)
            np.testing.assert_allclose(capped[b] * norms[b] / cap, exact[b], rtol=1e-4,
                                       atol=1e-4 * np.abs(exact[b]).max())
    assert np.sum(norms > cap) >= 1 and np.sum(norms <= cap) >= 1
