"""Building blocks of DDPM, NCSN++ and DDPM++ (flax.linen, NHWC).

Module class names and the order in which every block creates its sub-modules reproduce
score_sde's Flax parameter trees, so that released ``params_ema`` load without renaming:

* ``ResnetBlockDDPM`` (DDPM): GroupNorm_0, Conv_0, Dense_0, GroupNorm_1, Conv_1, [NIN_0 | Conv_2]
* ``ResnetBlockDDPMpp``: same layout, GroupNorm with ``min(C // 4, 32)`` groups
* ``ResnetBlockBigGANpp``: GroupNorm_0, Conv_0, Dense_0, GroupNorm_1, Conv_1, [Conv_2 (1x1)]
* ``AttnBlock`` / ``AttnBlockpp``: GroupNorm_0, NIN_0 (q), NIN_1 (k), NIN_2 (v), NIN_3 (out)
* ``Upsample`` / ``Downsample``: [Conv_0 | Conv2d_0] when resampling with a convolution
* ``Combine``: Conv_0 (1x1); ``NIN``: W (in, out), b (out,);
  ``GaussianFourierProjection``: W (embedding_size,)

Every module takes ``dtype``, the computation dtype; parameters are always created in float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from models import normalization, upfirdn
from models.initializers import default_init, ncsn_bias_init, ncsn_kernel_init

Activation = Callable[[jax.Array], jax.Array]
Dtype = Any


# --------------------------------------------------------------------------- helpers


def get_act(config: ml_collections.ConfigDict) -> Activation:
    """Activation named by ``config.model.nonlinearity`` (elu | relu | lrelu | swish)."""
    name = config.model.nonlinearity.lower()
    table: dict[str, Activation] = {
        'elu': nn.elu,
        'relu': nn.relu,
        'lrelu': lambda x: nn.leaky_relu(x, negative_slope=0.2),
        'swish': nn.swish,
    }
    if name not in table:
        raise NotImplementedError(f'activation {name!r} does not exist')
    return table[name]


def get_dtype(config: ml_collections.ConfigDict) -> Dtype:
    """Computation dtype from ``config.model.dtype`` ('float32' default, 'bfloat16')."""
    name = str(config.model.get('dtype', 'float32'))
    dtypes = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}
    if name not in dtypes:
        raise ValueError(f'unsupported model dtype {name!r}')
    return dtypes[name]


def residual_sum(x: jax.Array, h: jax.Array, skip_rescale: bool) -> jax.Array:
    """``x + h``, divided by sqrt(2) when ``skip_rescale``."""
    out = x + h
    return out / math.sqrt(2.0) if skip_rescale else out


def group_norm(x: jax.Array, dtype: Dtype = jnp.float32, num_groups: int | None = None
               ) -> jax.Array:
    """GroupNorm (eps 1e-6) with ``min(C // 4, 32)`` groups unless ``num_groups`` is given."""
    groups = num_groups if num_groups is not None else min(x.shape[-1] // 4, 32)
    return normalization.GroupNorm(num_groups=groups, dtype=dtype)(x)


def conv3x3(x: jax.Array, out_ch: int, stride: int = 1, bias: bool = True, dilation: int = 1,
            init_scale: float = 1.0, dtype: Dtype = jnp.float32) -> jax.Array:
    """3x3 'SAME' convolution with DDPM init (creates a ``Conv`` in the calling module)."""
    return nn.Conv(out_ch, kernel_size=(3, 3), strides=(stride, stride), padding='SAME',
                   kernel_dilation=(dilation, dilation), use_bias=bias,
                   kernel_init=default_init(init_scale), bias_init=nn.initializers.zeros,
                   dtype=dtype)(x)


def conv1x1(x: jax.Array, out_ch: int, stride: int = 1, bias: bool = True,
            init_scale: float = 1.0, dtype: Dtype = jnp.float32) -> jax.Array:
    """1x1 convolution with DDPM init (creates a ``Conv`` in the calling module)."""
    return nn.Conv(out_ch, kernel_size=(1, 1), strides=(stride, stride), padding='SAME',
                   use_bias=bias, kernel_init=default_init(init_scale),
                   bias_init=nn.initializers.zeros, dtype=dtype)(x)


def ncsn_conv(x: jax.Array, out_ch: int, ksize: int = 3, stride: int = 1, bias: bool = True,
              dilation: int = 1, init_scale: float = 1.0, dtype: Dtype = jnp.float32
              ) -> jax.Array:
    """NCSN-style ``ksize`` x ``ksize`` 'SAME' convolution (PyTorch default init)."""
    kinit = ncsn_kernel_init(init_scale)
    kshape = (ksize, ksize, x.shape[-1], out_ch)
    return nn.Conv(out_ch, kernel_size=(ksize, ksize), strides=(stride, stride),
                   padding='SAME', kernel_dilation=(dilation, dilation), use_bias=bias,
                   kernel_init=kinit, bias_init=ncsn_bias_init(kinit, kshape),
                   dtype=dtype)(x)


def timestep_embedding(timesteps: jax.Array, embedding_dim: int,
                       max_positions: float = 10000.0) -> jax.Array:
    """Transformer sinusoidal embedding of shape (B, embedding_dim), computed in float32.

    With ``half = embedding_dim // 2`` and ``w_j = max_positions^(-j / (half - 1))``:
    ``emb = [sin(t w_0..w_{half-1}), cos(t w_0..w_{half-1})]``, zero-padded if the dim is odd.
    """
    if timesteps.ndim != 1:
        raise ValueError('timesteps must have shape (B,)')
    half = embedding_dim // 2
    rate = math.log(max_positions) / (half - 1)
    freqs = jnp.exp(-rate * jnp.arange(half, dtype=jnp.float32))
    args = timesteps.astype(jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=1)
    if embedding_dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


# --------------------------------------------------------------------------- small modules


class GaussianFourierProjection(nn.Module):
    """Random Fourier features of a scalar: [sin(2 pi x W), cos(2 pi x W)], shape (B, 2 E).

    ``W ~ N(0, scale^2)`` of shape (E,), not trained (gradient stopped). Computed in float32.
    """

    embedding_size: int = 256
    scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.param('W', jax.nn.initializers.normal(stddev=self.scale),
                       (self.embedding_size,))
        w = jax.lax.stop_gradient(w)
        proj = 2.0 * jnp.pi * x.astype(jnp.float32)[:, None] * w[None, :]
        return jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)


class NIN(nn.Module):
    """Per-pixel linear map over the last axis: ``y = x W + b`` with W (in, out), b (out,)."""

    num_units: int
    init_scale: float = 0.1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.param('W', default_init(self.init_scale), (x.shape[-1], self.num_units))
        b = self.param('b', nn.initializers.zeros, (self.num_units,))
        x = x.astype(self.dtype)
        return jnp.tensordot(x, w.astype(self.dtype), axes=1) + b.astype(self.dtype)


class Combine(nn.Module):
    """Merge a skip signal ``x`` into ``y``: 1x1 conv of ``x`` to C_y channels, then sum or cat."""

    method: str = 'cat'
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        h = conv1x1(x, y.shape[-1], dtype=self.dtype)
        if self.method == 'cat':
            return jnp.concatenate([h, y], axis=-1)
        if self.method == 'sum':
            return h + y
        raise ValueError(f'combine method {self.method!r} not recognized')


def _spatial_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """Softmax attention over all H*W positions: out_i = sum_j softmax_j(q_i . k_j / sqrt C) v_j."""
    b, h, w, c = q.shape
    qf, kf, vf = (t.reshape(b, h * w, c) for t in (q, k, v))
    logits = jnp.einsum('bic,bjc->bij', qf, kf).astype(jnp.float32) * (c ** -0.5)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum('bij,bjc->bic', weights, vf).reshape(b, h, w, c)


class AttnBlockpp(nn.Module):
    """NCSN++ self-attention: x + NIN_3(attn(NIN_0 h, NIN_1 h, NIN_2 h)), h = GroupNorm(x)."""

    skip_rescale: bool = False
    init_scale: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        h = group_norm(x, self.dtype)
        q, k, v = (NIN(c, dtype=self.dtype)(h) for _ in range(3))
        h = NIN(c, init_scale=self.init_scale, dtype=self.dtype)(_spatial_attention(q, k, v))
        return residual_sum(x, h, self.skip_rescale)


class AttnBlock(nn.Module):
    """DDPM self-attention (no rescaling, zero-init output NIN); ``normalize`` builds the norm."""

    normalize: Callable[[], nn.Module]
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        h = self.normalize()(x)
        q, k, v = (NIN(c, dtype=self.dtype)(h) for _ in range(3))
        return x + NIN(c, init_scale=0.0, dtype=self.dtype)(_spatial_attention(q, k, v))


class Upsample(nn.Module):
    """2x upsampling (B, H, W, C) -> (B, 2H, 2W, out_ch).

    fir=False: nearest neighbour, then an optional 3x3 conv (``Conv_0``).
    fir=True: FIR upsampling, or with a conv the fused StyleGAN2 op (``Conv2d_0``).
    """

    out_ch: int | None = None
    with_conv: bool = False
    fir: bool = False
    fir_kernel: Sequence[int] = (1, 3, 3, 1)
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out_ch = self.out_ch or x.shape[-1]
        if not self.fir:
            h = upfirdn.naive_upsample_2d(x, 2)
            if self.with_conv:
                h = conv3x3(h, out_ch, dtype=self.dtype)
        elif not self.with_conv:
            h = upfirdn.upsample_2d(x, self.fir_kernel, factor=2)
        else:
            h = upfirdn.Conv2d(out_ch, kernel=3, up=True, resample_kernel=self.fir_kernel,
                               use_bias=True, kernel_init=default_init(), dtype=self.dtype)(x)
        return h


class Downsample(nn.Module):
    """2x downsampling (B, H, W, C) -> (B, H/2, W/2, out_ch).

    fir=False: 3x3 stride-2 conv (``Conv_0``) or 2x2 average pooling.
    fir=True: FIR downsampling, or with a conv the fused StyleGAN2 op (``Conv2d_0``).
    """

    out_ch: int | None = None
    with_conv: bool = False
    fir: bool = False
    fir_kernel: Sequence[int] = (1, 3, 3, 1)
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out_ch = self.out_ch or x.shape[-1]
        if not self.fir:
            if self.with_conv:
                return conv3x3(x, out_ch, stride=2, dtype=self.dtype)
            return upfirdn.naive_downsample_2d(x, 2)
        if not self.with_conv:
            return upfirdn.downsample_2d(x, self.fir_kernel, factor=2)
        return upfirdn.Conv2d(out_ch, kernel=3, down=True, resample_kernel=self.fir_kernel,
                              use_bias=True, kernel_init=default_init(), dtype=self.dtype)(x)


# --------------------------------------------------------------------------- residual blocks


def _add_time_bias(h: jax.Array, temb: jax.Array | None, act: Activation,
                   dtype: Dtype) -> jax.Array:
    """h + Dense(act(temb)) broadcast over H and W (creates ``Dense`` when temb is given)."""
    if temb is None:
        return h
    bias = nn.Dense(h.shape[-1], kernel_init=default_init(), dtype=dtype)(act(temb))
    return h + bias[:, None, None, :]


class ResnetBlockDDPMpp(nn.Module):
    """DDPM++ residual block: act-norm-conv, + time bias, act-norm-dropout-conv, skip."""

    act: Activation
    out_ch: int | None = None
    conv_shortcut: bool = False
    dropout: float = 0.1
    skip_rescale: bool = False
    init_scale: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array | None = None,
                 train: bool = False) -> jax.Array:
        in_ch = x.shape[-1]
        out_ch = self.out_ch or in_ch
        h = conv3x3(self.act(group_norm(x, self.dtype)), out_ch, dtype=self.dtype)
        h = _add_time_bias(h, temb, self.act, self.dtype)
        h = self.act(group_norm(h, self.dtype))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        h = conv3x3(h, out_ch, init_scale=self.init_scale, dtype=self.dtype)
        if in_ch != out_ch:
            if self.conv_shortcut:
                x = conv3x3(x, out_ch, dtype=self.dtype)
            else:
                x = NIN(out_ch, dtype=self.dtype)(x)
        return residual_sum(x, h, self.skip_rescale)


class ResnetBlockDDPM(nn.Module):
    """The DDPM residual block: like DDPM++ with a given norm, zero-init output, plain sum."""

    act: Activation
    normalize: Callable[[], nn.Module]
    out_ch: int | None = None
    conv_shortcut: bool = False
    dropout: float = 0.5
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array | None = None,
                 train: bool = False) -> jax.Array:
        in_ch = x.shape[-1]
        out_ch = self.out_ch or in_ch
        h = conv3x3(self.act(self.normalize()(x)), out_ch, dtype=self.dtype)
        h = _add_time_bias(h, temb, self.act, self.dtype)
        h = self.act(self.normalize()(h))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        h = conv3x3(h, out_ch, init_scale=0.0, dtype=self.dtype)
        if in_ch != out_ch:
            if self.conv_shortcut:
                x = conv3x3(x, out_ch, dtype=self.dtype)
            else:
                x = NIN(out_ch, dtype=self.dtype)(x)
        return x + h


class ResnetBlockBigGANpp(nn.Module):
    """BigGAN-style residual block with optional 2x up/down-sampling of both branches.

    h = conv(resample(act(norm x))) + Dense(act temb); h = conv(dropout(act(norm h)));
    the skip is resampled the same way and projected by a 1x1 conv when the shape changes.
    """

    act: Activation
    up: bool = False
    down: bool = False
    out_ch: int | None = None
    dropout: float = 0.1
    fir: bool = False
    fir_kernel: Sequence[int] = (1, 3, 3, 1)
    skip_rescale: bool = True
    init_scale: float = 0.0
    dtype: Dtype = jnp.float32

    def _resample(self, x: jax.Array) -> jax.Array:
        if self.up:
            if self.fir:
                return upfirdn.upsample_2d(x, self.fir_kernel, factor=2)
            return upfirdn.naive_upsample_2d(x, 2)
        if self.down:
            if self.fir:
                return upfirdn.downsample_2d(x, self.fir_kernel, factor=2)
            return upfirdn.naive_downsample_2d(x, 2)
        return x

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array | None = None,
                 train: bool = False) -> jax.Array:
        in_ch = x.shape[-1]
        out_ch = self.out_ch or in_ch
        h = self.act(group_norm(x, self.dtype))
        h, x = self._resample(h), self._resample(x)
        h = conv3x3(h, out_ch, dtype=self.dtype)
        h = _add_time_bias(h, temb, self.act, self.dtype)
        h = self.act(group_norm(h, self.dtype))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        h = conv3x3(h, out_ch, init_scale=self.init_scale, dtype=self.dtype)
        if in_ch != out_ch or self.up or self.down:
            x = conv1x1(x, out_ch, dtype=self.dtype)
        return residual_sum(x, h, self.skip_rescale)


def get_sigmas(config: ml_collections.ConfigDict) -> jax.Array:
    """The geometric noise ladder sigma_max -> sigma_min with ``config.model.num_scales`` points.

    sigmas[i] = exp(log sigma_max + i / (N - 1) * (log sigma_min - log sigma_max)), float32;
    index 0 is the largest noise level (the discrete VE label convention).
    """
    model = config.model
    return jnp.exp(jnp.linspace(jnp.log(float(model.sigma_max)), jnp.log(float(model.sigma_min)),
                                model.num_scales))
