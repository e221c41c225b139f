"""models.normalization.GroupNorm against flax's nn.GroupNorm, whose parameters it reuses."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.normalization import GroupNorm

EPS32 = float(np.finfo(np.float32).eps)


@pytest.mark.parametrize(('shape', 'groups'), [((2, 8, 8, 32), 32), ((3, 4, 6, 16), 4)])
def test_group_norm_is_flax_group_norm(shape, groups):
    rng = np.random.default_rng(0)
    x = jnp.asarray(1.0 + 2.0 * rng.normal(size=shape), jnp.float32)  # mean 1, std 2
    ours, theirs = GroupNorm(num_groups=groups), nn.GroupNorm(num_groups=groups)
    params = ours.init(jax.random.key(0), x)
    assert (jax.tree.map(np.shape, params)
            == jax.tree.map(np.shape, theirs.init(jax.random.key(0), x)))
    c = shape[-1]
    params = {'params': {'scale': jnp.asarray(rng.normal(size=c), jnp.float32),
                         'bias': jnp.asarray(rng.normal(size=c), jnp.float32)}}
    got = np.asarray(ours.apply(params, x))
    want = np.asarray(theirs.apply(params, x))
    # Both sum n = H W C / G float32 terms (pairwise: <= log2(n) eps relative each) and form
    # v = E[x^2] - m^2, which loses E[x^2] / v (= 1.25 here) of that; y scales with |x - m|/sd.
    n = shape[1] * shape[2] * c // groups
    tol = 4 * (np.log2(n) + 4) * EPS32 * 1.25 * np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    # and the definition, in float64
    xg = np.asarray(x, np.float64).reshape(shape[0], -1, groups, c // groups)
    m = xg.mean(axis=(1, 3), keepdims=True)
    v = xg.var(axis=(1, 3), keepdims=True)
    y = ((xg - m) / np.sqrt(v + 1e-6)).reshape(shape)
    y = y * np.asarray(params['params']['scale']) + np.asarray(params['params']['bias'])
    np.testing.assert_allclose(got, y, rtol=0, atol=tol)


def test_group_norm_names_a_bad_group_count():
    with pytest.raises(ValueError, match='12 channels do not split into 5 groups'):
        GroupNorm(num_groups=5).init(jax.random.key(0), jnp.zeros((1, 2, 2, 12)))


@pytest.mark.parametrize('ratio', [1e3, 3e4])
def test_group_norm_is_stable_when_the_mean_dwarfs_the_spread(ratio):
    """x = ratio + N(0, 1) per group: flax's E[x^2] - m^2 loses all of v at ratio ~ 1e3 (the
    float32 sum of n terms ratio^2 carries ~ log2(n) eps ratio^2 >= v); the shifted sums are
    held to the float64 definition on the same float32 input. Their error is the float32 mean
    m = c + d's, at most ~ (log2(n) + 4) eps ratio absolute, divided by the spread 1, plus
    eps-level terms (measured: 3e-5 at ratio 1e3, against flax's 0.94)."""
    rng = np.random.default_rng(1)
    shape, groups = (2, 8, 8, 32), 8
    x = jnp.asarray(ratio + rng.normal(size=shape), jnp.float32)
    params = GroupNorm(num_groups=groups).init(jax.random.key(0), x)
    got = np.asarray(GroupNorm(num_groups=groups).apply(params, x))
    xg = np.asarray(x, np.float64).reshape(shape[0], -1, groups, shape[-1] // groups)
    m = xg.mean(axis=(1, 3), keepdims=True)
    y = ((xg - m) / np.sqrt(xg.var(axis=(1, 3), keepdims=True) + 1e-6)).reshape(shape)
    n = shape[1] * shape[2] * shape[-1] // groups
    tol = 4 * (np.log2(n) + 4) * EPS32 * (1 + ratio)
    np.testing.assert_allclose(got, y, rtol=0, atol=tol)
    flax_form = np.asarray(nn.GroupNorm(num_groups=groups).apply(params, x))
    assert np.abs(flax_form - y).max() > 10 * tol  # the instrument sees the one-pass loss
