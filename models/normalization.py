"""Normalisation layers of NCSN/NCSNv2 (per-image statistics over H and W, NHWC).

Parameter names and shapes follow score_sde (all of shape (1, 1, 1, C)):
* ``InstanceNorm2d``: ``scale`` (ones), ``bias`` (zeros).
  y = (x - mu) / sqrt(var + 1e-5) * scale + bias
* ``InstanceNorm2dPlus`` (InstanceNorm++): ``alpha``, ``gamma`` (N(1, 0.02^2)), ``beta`` (zeros).
  With mu_c the per-channel means, m, v the mean and variance of mu over channels:
  y = gamma * ((x - mu) / sqrt(var + 1e-5) + alpha * (mu - m) / sqrt(v + 1e-5)) + beta
* ``VarianceNorm2d``: ``scale`` (N(1, 0.02^2)), optional ``bias``. y = x / sqrt(var + 1e-5) * scale

and the GroupNorm of DDPM / NCSN++ (``GroupNorm``: flax's parameters and math, faster on CPU).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

_EPS = 1e-5


def _near_one(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """Initialiser N(1, 0.02^2)."""
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def _standardize(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Return ((x - mu) / sqrt(var + eps), mu) with statistics over H, W in float32."""
    xf = x.astype(jnp.float32)
    mean = xf.mean(axis=(1, 2), keepdims=True)
    var = xf.var(axis=(1, 2), keepdims=True)
    return (xf - mean) / jnp.sqrt(var + _EPS), mean


class InstanceNorm2d(nn.Module):
    """Instance normalisation with affine ``scale`` and optional ``bias``."""

    bias: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (1, 1, 1, x.shape[-1])
        h, _ = _standardize(x)
        h = h * self.param('scale', nn.initializers.ones, shape)
        if self.bias:
            h = h + self.param('bias', nn.initializers.zeros, shape)
        return h.astype(self.dtype)


class InstanceNorm2dPlus(nn.Module):
    """InstanceNorm++ of NCSN: instance norm plus a learned re-injection of channel means."""

    bias: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (1, 1, 1, x.shape[-1])
        h, mean = _standardize(x)
        m = mean.mean(axis=-1, keepdims=True)
        v = mean.var(axis=-1, keepdims=True)
        mean_plus = (mean - m) / jnp.sqrt(v + _EPS)
        h = h + mean_plus * self.param('alpha', _near_one, shape)
        h = h * self.param('gamma', _near_one, shape)
        if self.bias:
            h = h + self.param('beta', nn.initializers.zeros, shape)
        return h.astype(self.dtype)


class VarianceNorm2d(nn.Module):
    """Divide by the per-image, per-channel standard deviation (no centring)."""

    bias: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (1, 1, 1, x.shape[-1])
        xf = x.astype(jnp.float32)
        h = xf / jnp.sqrt(xf.var(axis=(1, 2), keepdims=True) + _EPS)
        h = h * self.param('scale', _near_one, shape)
        if self.bias:
            h = h + self.param('bias', nn.initializers.zeros, shape)
        return h.astype(self.dtype)


class GroupNorm(nn.Module):
    """GroupNorm of NHWC input: per example and group of C / G channels,
    y = (x - m) / sqrt(v + eps) * scale + bias with m, v the mean and variance over
    (H, W, the group's channels); ``scale`` (ones) and ``bias`` (zeros) of shape (C,).

    The parameters, their names and eps (1e-6) are flax's ``nn.GroupNorm``, so checkpoints load
    unchanged; statistics in float32. flax's one-pass v = E[x^2] - m^2 cancels when a group's
    mean is large against its spread (n float32 terms of size m^2 carry rounding ~ eps m^2
    log n, all of v at |m| / sd ~ 1e3). Here both sums are taken about a shift c, one pixel's
    mean over the group's channels (treated as a constant: v and m do not depend on it):

        d = E[x - c],   v = E[(x - c)^2] - d^2,   m = c + d,

    with |m - c| of the order of the spread, so the cancellation is benign whatever the mean;
    still one pass over x, as flax's. The sums run over H and W first, to (B, C), then over each
    group's channels; XLA:CPU runs this about ten times faster than flax's reduction of the
    (B, H, W, G, C / G) view. Output in ``dtype``.
    """

    num_groups: int = 32
    epsilon: float = 1e-6
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        g = self.num_groups
        if c % g:
            raise ValueError(f'GroupNorm: {c} channels do not split into {g} groups')
        xf = x.astype(jnp.float32)
        count = h * w * (c // g)

        def per_channel(v):  # (B, G) -> (B, 1, 1, C)
            return jnp.repeat(v, c // g, axis=1)[:, None, None, :]

        shift = jax.lax.stop_gradient(xf[:, 0, 0, :].reshape(b, g, c // g).mean(axis=-1))
        flat = (xf - per_channel(shift)).reshape(b, h * w, c)
        d = flat.sum(axis=1).reshape(b, g, c // g).sum(axis=-1) / count
        d_sq = (flat * flat).sum(axis=1).reshape(b, g, c // g).sum(axis=-1) / count
        inv = jax.lax.rsqrt(jnp.maximum(d_sq - d * d, 0.0) + self.epsilon)
        scale = self.param('scale', nn.initializers.ones, (c,))
        bias = self.param('bias', nn.initializers.zeros, (c,))
        y = (xf - per_channel(shift + d)) * (per_channel(inv) * scale) + bias
        return y.astype(self.dtype)


def get_normalization(config: ml_collections.ConfigDict,
                      dtype: Any = jnp.float32) -> Callable[[], nn.Module]:
    """Factory of the normaliser named by ``config.model.normalization``.

    'GroupNorm' gives ``GroupNorm`` (flax's, 32 groups, eps 1e-6), as DDPM uses.
    """
    name = config.model.normalization
    table: dict[str, Callable[[], nn.Module]] = {
        'InstanceNorm': functools.partial(InstanceNorm2d, dtype=dtype),
        'InstanceNorm++': functools.partial(InstanceNorm2dPlus, dtype=dtype),
        'VarianceNorm': functools.partial(VarianceNorm2d, dtype=dtype),
        'GroupNorm': functools.partial(GroupNorm, num_groups=32, dtype=dtype),
    }
    if name not in table:
        raise ValueError(f'unknown normalization {name!r}')
    return table[name]
