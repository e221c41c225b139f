"""RefineNet building blocks of NCSNv2 (Song & Ermon 2020), NHWC, PyTorch-style init.

Parameter layouts (score_sde names):
* ``ConvMeanPool``: Conv_0 (flax default init), then 2x2 mean pooling.
* ``ResidualBlock``: normaliser_0, [shortcut conv], convs, normaliser_1; see ``__call__``.
* ``RCUBlock``: n_blocks * n_stages bias-free 3x3 convs (residual units).
* ``CRPBlock``: n_stages bias-free 3x3 convs after 5x5 max pooling (chained residual pooling).
* ``MSFBlock``: one 3x3 conv per input, resized to ``shape`` and summed (multi-resolution fusion).
* ``RefineBlock``: RCUBlock per input, MSFBlock (unless ``start``), CRPBlock, output RCUBlock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import upfirdn
from models.layers import Activation, ncsn_conv


class ConvMeanPool(nn.Module):
    """k x k 'SAME' conv to ``output_dim`` channels followed by 2x2 average pooling."""

    output_dim: int
    kernel_size: int = 3
    biases: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.Conv(self.output_dim, kernel_size=(self.kernel_size, self.kernel_size),
                    padding='SAME', use_bias=self.biases, dtype=self.dtype)(x)
        return upfirdn.naive_downsample_2d(h, 2)


class ResidualBlock(nn.Module):
    """NCSNv2 residual block (unconditional normaliser).

    resample='down', dilation 1: h = CMP(act(norm(conv(act(norm x))))), skip = CMP_1x1(x)
    (spatial size halves); with dilation > 1 the two convs are dilated 3x3 convs and the size is
    kept. resample=None: h = conv(act(norm(conv(act(norm x))))), skip = x or a projection.
    """

    output_dim: int
    normalization: Callable[[], nn.Module]
    resample: str | None = None
    act: Activation = nn.elu
    dilation: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dil, out, dt = self.dilation, self.output_dim, self.dtype
        h = self.act(self.normalization()(x))
        if self.resample == 'down':
            h = ncsn_conv(h, h.shape[-1], dilation=dil, dtype=dt)
            h = self.act(self.normalization()(h))
            if dil > 1:
                h = ncsn_conv(h, out, dilation=dil, dtype=dt)
                skip = ncsn_conv(x, out, dilation=dil, dtype=dt)
            else:
                h = ConvMeanPool(out, dtype=dt)(h)
                skip = ConvMeanPool(out, kernel_size=1, dtype=dt)(x)
            return h + skip
        if self.resample is not None:
            raise ValueError(f'resample {self.resample!r} not supported')
        if out == x.shape[-1]:
            skip = x
        elif dil > 1:
            skip = ncsn_conv(x, out, dilation=dil, dtype=dt)
        else:
            skip = ncsn_conv(x, out, ksize=1, dtype=dt)
        h = ncsn_conv(h, out, dilation=dil, dtype=dt)
        h = self.act(self.normalization()(h))
        h = ncsn_conv(h, out, dilation=dil, dtype=dt)
        return h + skip


class RCUBlock(nn.Module):
    """Residual conv units: n_blocks times x <- x + (act -> conv)^n_stages (x)."""

    features: int
    n_blocks: int
    n_stages: int
    act: Activation = nn.relu
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for _ in range(self.n_blocks):
            residual = x
            for _ in range(self.n_stages):
                x = ncsn_conv(self.act(x), self.features, bias=False, dtype=self.dtype)
            x = x + residual
        return x


class CRPBlock(nn.Module):
    """Chained residual pooling: x = act(x); path <- conv(maxpool5x5(path)); x <- x + path."""

    features: int
    n_stages: int
    act: Activation = nn.relu
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.act(x)
        path = x
        for _ in range(self.n_stages):
            path = nn.max_pool(path, window_shape=(5, 5), strides=(1, 1), padding='SAME')
            path = ncsn_conv(path, self.features, bias=False, dtype=self.dtype)
            x = path + x
        return x


class MSFBlock(nn.Module):
    """Multi-resolution fusion: sum_i resize(conv_i(x_i), shape); output (B, *shape, features)."""

    shape: Sequence[int]
    features: int
    interpolation: str = 'bilinear'
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, xs: Sequence[jax.Array]) -> jax.Array:
        methods = {'bilinear': 'bilinear', 'nearest_neighbor': 'nearest'}
        if self.interpolation not in methods:
            raise ValueError(f'interpolation {self.interpolation!r} does not exist')
        total = None
        for x in xs:
            h = ncsn_conv(x, self.features, dtype=self.dtype)
            h = jax.image.resize(h, (h.shape[0], *self.shape, h.shape[-1]),
                                 methods[self.interpolation])
            total = h if total is None else total + h
        return total


class RefineBlock(nn.Module):
    """RefineNet block fusing the inputs ``xs`` at resolution ``output_shape``."""

    output_shape: Sequence[int]
    features: int
    act: Activation = nn.relu
    interpolation: str = 'bilinear'
    start: bool = False
    end: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, xs: Sequence[jax.Array]) -> jax.Array:
        hs = [RCUBlock(x.shape[-1], n_blocks=2, n_stages=2, act=self.act, dtype=self.dtype)(x)
              for x in xs]
        if self.start:
            h = hs[0]
        else:
            h = MSFBlock(tuple(self.output_shape), self.features,
                         interpolation=self.interpolation, dtype=self.dtype)(hs)
        h = CRPBlock(self.features, n_stages=2, act=self.act, dtype=self.dtype)(h)
        return RCUBlock(self.features, n_blocks=3 if self.end else 1, n_stages=2, act=self.act,
                        dtype=self.dtype)(h)
