"""StyleGAN2-style FIR resampling for NHWC tensors.

The primitive is ``upfirdn2d``: zero-stuff every pixel with ``up - 1`` trailing zeros along H and
W, zero-pad by ``(pad0, pad1)`` on both spatial axes, convolve (a true convolution, i.e. with
the flipped kernel) with a 2-D FIR kernel keeping only fully-covered outputs, and keep every
``down``-th sample. Everything else is expressed through it:

* ``upsample_2d``: ``up = f``, kernel ``K * f^2``, pads ``((p + 1) // 2 + f - 1, p // 2)`` with
  ``p = n - f`` (``n`` = FIR taps). A constant image maps to the same constant in the interior.
* ``downsample_2d``: ``down = f``, kernel ``K``, pads ``((p + 1) // 2, p // 2)``.
* ``upsample_conv_2d``: the fused "upsample then 3x3 conv" of StyleGAN2: a full (``K - 1``
  padded) cross-correlation of the zero-stuffed input with the conv weight followed by the FIR
  filter with pads ``((p + 1) // 2 + f - 1, p // 2 + 1)``, ``p = n - f - (K - 1)``. Output
  ``(B, f H, f W, C_out)``.
* ``conv_downsample_2d``: FIR filter with pads ``((p + 1) // 2, p // 2)``, ``p = n - f + K - 1``,
  then a VALID stride-``f`` cross-correlation. Output ``(B, H / f, W / f, C_out)``.

``K`` is the FIR kernel normalised to unit sum (a 1-D kernel ``k`` becomes ``outer(k, k)``).
Conv weights are HWIO, as in score_sde's ``Conv2d`` (parameters ``weight`` and ``bias``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models.initializers import default_init

_NHWC = ('NHWC', 'HWIO', 'NHWC')


def setup_kernel(k: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return the 2-D FIR kernel ``K`` of unit sum (outer product for a 1-D ``k``)."""
    arr = np.asarray(k, dtype=np.float32)
    if arr.ndim == 1:
        arr = np.outer(arr, arr)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f'FIR kernel must be 1-D or square 2-D, got shape {arr.shape}')
    return arr / arr.sum()


def upfirdn2d(x: jax.Array, kernel: Sequence[float] | np.ndarray, up: int = 1, down: int = 1,
              pad0: int = 0, pad1: int = 0) -> jax.Array:
    """Upsample (zero-stuff), pad, FIR-filter and downsample ``x`` of shape (B, H, W, C).

    ``kernel`` is 2-D (n, n), or 1-D taps ``k`` for the separable kernel ``outer(k, k)``.
    Output spatial size per axis: ``(H * up + pad0 + pad1 - n) // down + 1``.
    A separable kernel runs as two 1-D passes (``_upfirdn_1d``: n shifted, strided slices of
    the padded signal, which XLA fuses into one loop per axis, computing only the kept
    outputs); a 2-D kernel as one depthwise convolution, in which ``lhs_dilation = up``
    inserts the zeros between pixels and the extra ``up - 1`` on the high side supplies the
    trailing zeros of the last pixel. The two agree to float32 rounding (the separable one
    sums n + n products instead of n^2).
    """
    if min(pad0, pad1) < 0:
        raise ValueError('negative padding (cropping) is not supported')
    taps = np.asarray(kernel, dtype=np.float32)
    if taps.ndim == 1:
        y = _upfirdn_1d(x, taps, 1, up, down, pad0, pad1)
        return _upfirdn_1d(y, taps, 2, up, down, pad0, pad1)
    channels = x.shape[-1]
    flipped = taps[::-1, ::-1]  # true convolution
    weight = np.tile(flipped[:, :, None, None], (1, 1, 1, channels))
    pad = (pad0, pad1 + up - 1)
    return jax.lax.conv_general_dilated(
        x, jnp.asarray(weight, dtype=x.dtype),
        window_strides=(down, down),
        padding=(pad, pad),
        lhs_dilation=(up, up),
        dimension_numbers=_NHWC,
        feature_group_count=channels)


def _upfirdn_1d(x: jax.Array, taps: np.ndarray, axis: int, up: int, down: int, pad0: int,
                pad1: int) -> jax.Array:
    """``upfirdn2d`` along one axis: s = x with ``up - 1`` zeros after every sample, padded
    by (pad0, pad1); out[j] = sum_m taps[n - 1 - m] s[j down + m] for the n taps."""
    n = taps.shape[0]
    config = [(0, 0, 0)] * x.ndim
    config[axis] = (pad0, pad1 + up - 1, up - 1)  # interior padding zero-stuffs
    s = jax.lax.pad(x, jnp.zeros((), x.dtype), config)
    count = (s.shape[axis] - n) // down + 1
    out = None
    for m, tap in enumerate(taps[::-1]):
        if tap == 0:
            continue
        part = jax.lax.slice_in_dim(s, m, m + (count - 1) * down + 1, down, axis) * float(tap)
        out = part if out is None else out + part
    return jnp.zeros_like(jax.lax.slice_in_dim(s, 0, count, 1, axis)) if out is None else out


def _fir(k: Sequence[float] | None, factor: int, scale: float) -> np.ndarray:
    """The FIR kernel ``K * scale`` for ``upfirdn2d``: 1-D taps ``k / sum(k) * sqrt(scale)``
    (separable, ``K = outer``) for a 1-D ``k`` (default: ``factor`` ones), else 2-D."""
    arr = np.asarray([1] * factor if k is None else k, dtype=np.float64)
    if arr.ndim == 1:
        return (arr / arr.sum() * np.sqrt(scale)).astype(np.float32)
    return setup_kernel(arr) * scale


def upsample_2d(x: jax.Array, k: Sequence[float] | None = None, factor: int = 2,
                gain: float = 1.0) -> jax.Array:
    """FIR upsampling (B, H, W, C) -> (B, f H, f W, C); default kernel = nearest neighbour."""
    kern = _fir(k, factor, gain * factor ** 2)
    p = kern.shape[0] - factor
    return upfirdn2d(x, kern, up=factor, pad0=(p + 1) // 2 + factor - 1, pad1=p // 2)


def downsample_2d(x: jax.Array, k: Sequence[float] | None = None, factor: int = 2,
                  gain: float = 1.0) -> jax.Array:
    """FIR downsampling (B, H, W, C) -> (B, H / f, W / f, C); default kernel = box average."""
    kern = _fir(k, factor, gain)
    p = kern.shape[0] - factor
    return upfirdn2d(x, kern, down=factor, pad0=(p + 1) // 2, pad1=p // 2)


def upsample_conv_2d(x: jax.Array, w: jax.Array, k: Sequence[float] | None = None,
                     factor: int = 2, gain: float = 1.0) -> jax.Array:
    """Fused FIR upsampling and convolution; ``w`` is HWIO (K, K, C_in, C_out)."""
    ksize = w.shape[0]
    if w.shape[1] != ksize:
        raise ValueError('only square conv kernels are supported')
    kern = _fir(k, factor, gain * factor ** 2)
    p = (kern.shape[0] - factor) - (ksize - 1)
    full = (ksize - 1, ksize - 1)
    y = jax.lax.conv_general_dilated(
        x, w.astype(x.dtype), window_strides=(1, 1), padding=(full, full),
        lhs_dilation=(factor, factor), dimension_numbers=_NHWC)
    return upfirdn2d(y, kern, pad0=(p + 1) // 2 + factor - 1, pad1=p // 2 + 1)


def conv_downsample_2d(x: jax.Array, w: jax.Array, k: Sequence[float] | None = None,
                       factor: int = 2, gain: float = 1.0) -> jax.Array:
    """Fused FIR filtering and strided convolution; ``w`` is HWIO (K, K, C_in, C_out)."""
    ksize = w.shape[0]
    if w.shape[1] != ksize:
        raise ValueError('only square conv kernels are supported')
    kern = _fir(k, factor, gain)
    p = (kern.shape[0] - factor) + (ksize - 1)
    y = upfirdn2d(x, kern, pad0=(p + 1) // 2, pad1=p // 2)
    return jax.lax.conv_general_dilated(
        y, w.astype(x.dtype), window_strides=(factor, factor), padding='VALID',
        dimension_numbers=_NHWC)


def naive_upsample_2d(x: jax.Array, factor: int = 2) -> jax.Array:
    """Nearest-neighbour upsampling by pixel repetition: (B, H, W, C) -> (B, f H, f W, C)."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def naive_downsample_2d(x: jax.Array, factor: int = 2) -> jax.Array:
    """Box-average downsampling over f x f blocks: (B, H, W, C) -> (B, H / f, W / f, C)."""
    b, h, w, c = x.shape
    blocks = x.reshape(b, h // factor, factor, w // factor, factor, c)
    return blocks.mean(axis=(2, 4))


class Conv2d(nn.Module):
    """Convolution with optional fused FIR up/down-sampling (params ``weight`` HWIO, ``bias``).

    Without resampling it is a stride-1 'SAME' cross-correlation.
    """

    fmaps: int
    kernel: int
    up: bool = False
    down: bool = False
    resample_kernel: Sequence[int] = (1, 3, 3, 1)
    use_bias: bool = True
    kernel_init: Callable[..., Any] = default_init()
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.up and self.down:
            raise ValueError('Conv2d cannot both upsample and downsample')
        if self.kernel < 1 or self.kernel % 2 != 1:
            raise ValueError('Conv2d kernel size must be odd and positive')
        x = x.astype(self.dtype)
        shape = (self.kernel, self.kernel, x.shape[-1], self.fmaps)
        weight = self.param('weight', self.kernel_init, shape).astype(self.dtype)
        if self.up:
            y = upsample_conv_2d(x, weight, k=self.resample_kernel)
        elif self.down:
            y = conv_downsample_2d(x, weight, k=self.resample_kernel)
        else:
            y = jax.lax.conv_general_dilated(x, weight, (1, 1), 'SAME', dimension_numbers=_NHWC)
        if self.use_bias:
            bias = self.param('bias', nn.initializers.zeros, (self.fmaps,))
            y = y + bias.astype(self.dtype)
        return y
