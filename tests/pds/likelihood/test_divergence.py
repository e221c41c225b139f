"""The divergence: exact (one JVP per dimension) against the trace of the dense Jacobian,
Hutchinson against its definition with the same probes, the probes' law and streams, and the
configuration rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pds.analytic.gaussian_field import GaussianField
from pds.analytic.mixture import GaussianMixtureField, mixture_score_fn
from pds.likelihood.divergence import Divergence, exact_divergence, hutchinson_divergence
from pds.method.sde import VESDE
from pds.runtime.errors import ConfigError
from pds.sampling.noise import example_keys

H, W, C, B = 4, 4, 2, 3
SDE = VESDE(0.01, 20.0, 1000)
MIX = GaussianMixtureField((GaussianField((0.3, 0.6), (0.04, 0.03)),
                            GaussianField((0.7, 0.4), (0.02, 0.05), beta=1.5)), (0.6, 0.4))


def drift():
    """A nonlinear per-example drift: the mixture's probability-flow velocity at t = 0.3."""
    score = mixture_score_fn(SDE, MIX.variables(H, W))
    t = jnp.full((B,), 0.3)
    g2 = SDE.sde(jnp.zeros((B, H, W, C)), t)[1] ** 2

    def fn(x):
        return -0.5 * g2[:, None, None, None] * score(x, t)

    return fn


def dense_jacobians(fn, x) -> np.ndarray:
    """(B, D, D): each example's Jacobian of fn, from the full batch Jacobian."""
    d = H * W * C
    full = jax.jacfwd(lambda v: fn(v.reshape(x.shape)).reshape(B, d))(x.reshape(B, d))
    full = np.asarray(full, np.float64).reshape(B, d, B, d)
    return np.stack([full[b, :, b, :] for b in range(B)])


def x_batch() -> jnp.ndarray:
    return jnp.asarray(MIX.sample(np.random.default_rng(0), B, H, W), jnp.float32)


def test_exact_divergence_is_the_jacobian_trace():
    fn, x = drift(), x_batch()
    v, div = exact_divergence(fn, x)
    jac = dense_jacobians(fn, x)
    np.testing.assert_array_equal(np.asarray(v), np.asarray(fn(x)))
    trace = np.trace(jac, axis1=1, axis2=2)
    scale = np.abs(np.diagonal(jac, axis1=1, axis2=2)).sum(axis=1)
    np.testing.assert_allclose(np.asarray(div), trace, rtol=0, atol=1e-5 * scale.max())


@pytest.mark.parametrize('probe', ['rademacher', 'gaussian'])
def test_hutchinson_is_the_quadratic_form_of_its_probes(probe):
    fn, x = drift(), x_batch()
    div = Divergence(3, probe)
    probes = div.probes(example_keys(jnp.uint32(1), jnp.arange(B)), (H, W, C))
    assert probes.shape == (B, 3, H, W, C)
    if probe == 'rademacher':
        assert set(np.unique(np.asarray(probes)).tolist()) == {-1.0, 1.0}
    v, est = hutchinson_divergence(fn, x, probes)
    jac = dense_jacobians(fn, x)
    e = np.asarray(probes, np.float64).reshape(B, 3, -1)
    want = np.einsum('bpi,bij,bpj->bp', e, jac, e).mean(axis=1)
    scale = np.einsum('bpi,bij,bpj->bp', np.abs(e), np.abs(jac), np.abs(e)).max()
    np.testing.assert_allclose(np.asarray(est), want, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(np.asarray(v), np.asarray(fn(x)), rtol=1e-6, atol=1e-6)


def test_probes_follow_the_example_not_the_batch():
    div = Divergence(2, 'gaussian')
    whole = np.asarray(div.probes(example_keys(jnp.uint32(5), jnp.arange(8)), (H, W, C)))
    part = np.asarray(div.probes(example_keys(jnp.uint32(5), jnp.arange(4, 8)), (H, W, C)))
    np.testing.assert_array_equal(whole[4:], part)
    assert not np.array_equal(whole[0], whole[1])


def test_rademacher_probes_are_balanced():
    div = Divergence(64)
    p = np.asarray(div.probes(example_keys(jnp.uint32(0), jnp.arange(16)), (H, W, C)))
    n = p.size  # 32,768 signs: the mean of fair signs has sd 1 / sqrt(n)
    assert abs(p.mean()) < 5 / np.sqrt(n)


@pytest.mark.parametrize('value', [-1, 1.5, True, '2'])
def test_num_probes_must_be_a_nonnegative_integer(value):
    with pytest.raises(ConfigError, match=r'eval\.bpd_num_probes'):
        Divergence(value)


def test_probe_kind_is_checked():
    with pytest.raises(ConfigError, match=r"eval\.bpd_probe.*'rademacher' or 'gaussian'"):
        Divergence(1, 'sphere')
