"""The FID Inception network (TF Inception graph of 2015-12-05) in Flax, NHWC.

This is the network that defines FID: the 1008-way ImageNet classifier released by Google on
2015-12-05, as ported to PyTorch by pytorch-fid (``pt_inception-2015-12-05-6726825d.pth``).
It is NOT torchvision's InceptionV3, which has other weights and a slightly different graph.
Differences from the textbook InceptionV3, all reproduced here:

* the 3x3 average pools inside the A, C and first E blocks (Mixed_5b-d, Mixed_6b-e,
  Mixed_7b) divide by the number of in-bounds pixels (TF 'SAME' pooling, i.e. PyTorch's
  ``count_include_pad=False``), not by 9;
* the pool branch of the last block (Mixed_7c) is a 3x3 *max* pool (stride 1, pad 1);
* the classifier head has 1008 outputs.

Every convolution is a ``BasicConv``: conv (no bias) -> BatchNorm(eps=1e-3, running
statistics) -> ReLU. Module names equal the PyTorch attribute names (``Mixed_6b``,
``branch7x7dbl_3``, ...), so the parameter tree is a renaming of pytorch-fid's state_dict
(see ``evaluation.inception_weights``).

Input policy (``preprocess``): images are NHWC, either uint8 in [0, 255] or floats in [0, 1].
They are converted to float32 in [0, 1], resized to 299x299 with *bilinear interpolation,
half-pixel centres, no antialiasing* (exactly PyTorch's
``F.interpolate(mode='bilinear', align_corners=False)`` as used by pytorch-fid), then mapped to
[-1, 1] by ``2x - 1``. Note that TF-GAN / score_sde resize with TF1's ``resize_bilinear``
(no half-pixel centres), so FIDs against their statistics are not exactly comparable; name the
resize in every report (the string ``RESIZE_POLICY``).

Outputs of ``FIDInceptionV3.__call__``: ``pool_3`` (N, 2048), the global average of Mixed_7c,
and ``logits`` (N, 1008) = pool_3 @ fc.kernel + fc.bias.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

INCEPTION_SIZE = 299
POOL_DIM = 2048
NUM_LOGITS = 1008
BN_EPS = 1e-3
# Full float32 convolutions/matmuls: on GPUs the default precision may use TF32, which moves
# pool_3 features by ~1e-3 relative and hence FID; exactness matters more than speed here.
PRECISION = jax.lax.Precision.HIGHEST
RESIZE_POLICY = 'bilinear-halfpixel-noaa-299 (pytorch-fid F.interpolate, align_corners=False)'

Pair = tuple[int, int]


def _pair(v: int | Pair) -> Pair:
    return (v, v) if isinstance(v, int) else tuple(v)


# --------------------------------------------------------------------------------------------
# Resize and input scaling
# --------------------------------------------------------------------------------------------

def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) matrix A with resized = A @ signal, half-pixel bilinear.

    Output pixel i samples the input at s = (i + 1/2) * in_size / out_size - 1/2, clamped below
    at 0; with i0 = floor(s), i1 = min(i0 + 1, in_size - 1), w = s - i0, row i of A holds
    (1 - w) at column i0 and w at column i1. No antialiasing filter is applied when
    shrinking (PyTorch's default ``antialias=False``).
    """
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    mat = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    np.add.at(mat, (rows, lo), 1.0 - frac)
    np.add.at(mat, (rows, hi), frac)
    return mat


def resize_bilinear(images: jax.Array, size: Pair = (INCEPTION_SIZE, INCEPTION_SIZE)) -> jax.Array:
    """Resize NHWC float images to ``size`` = (H', W') with ``bilinear_matrix`` on each axis.

    out[n, i, j, c] = sum_{h, w} Ah[i, h] * Aw[j, w] * images[n, h, w, c].
    """
    h, w = images.shape[1:3]
    if (h, w) == tuple(size):
        return images
    ah = jnp.asarray(bilinear_matrix(h, size[0]), images.dtype)
    aw = jnp.asarray(bilinear_matrix(w, size[1]), images.dtype)
    out = jnp.einsum('ih,nhwc->niwc', ah, images, precision=PRECISION)
    return jnp.einsum('jw,niwc->nijc', aw, out, precision=PRECISION)


def to_unit_range(images: jax.Array) -> jax.Array:
    """uint8 [0, 255] -> float32 [0, 1]; floating images are taken to be in [0, 1] already."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)


def preprocess(images: jax.Array, resize: bool = True) -> jax.Array:
    """NHWC uint8 or [0, 1] images -> (N, 299, 299, 3) float32 in [-1, 1] (``RESIZE_POLICY``)."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f'expected NHWC RGB images (N, H, W, 3), got shape {images.shape}')
    x = to_unit_range(images)
    if resize:
        x = resize_bilinear(x)
    return 2.0 * x - 1.0


# --------------------------------------------------------------------------------------------
# Pooling helpers (NHWC)
# --------------------------------------------------------------------------------------------

def max_pool(x: jax.Array, k: int = 3, stride: int = 1, pad: int = 0) -> jax.Array:
    """k x k max pool; padded positions are -inf so they never win."""
    padding = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, stride, stride, 1),
                                 padding)


def avg_pool_exclude_pad(x: jax.Array, k: int = 3, pad: int = 1) -> jax.Array:
    """Stride-1 k x k average over the in-bounds pixels only (count_include_pad=False).

    out[n, i, j, c] = sum_{window ∩ image} x / |window ∩ image|.
    """
    padding = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    win, strides = (1, k, k, 1), (1, 1, 1, 1)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, win, strides, padding)
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, win, strides, padding)
    return total / count


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------

class BasicConv(nn.Module):
    """conv(no bias) -> BatchNorm(inference, eps=1e-3) -> ReLU, NHWC.

    Parameters: ``kernel`` (kh, kw, C_in, C_out), ``scale``/``bias``/``mean``/``var`` (C_out,).
    The batch norm is folded into the convolution:
    y = relu(conv(x, kernel * g) + bias - mean * g), g = scale / sqrt(var + eps).
    """

    features: int
    kernel_size: int | Pair
    stride: int = 1
    padding: int | Pair = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = _pair(self.kernel_size)
        ph, pw = _pair(self.padding)
        c_in = x.shape[-1]
        kernel = self.param('kernel', nn.initializers.lecun_normal(),
                            (kh, kw, c_in, self.features))
        scale = self.param('scale', nn.initializers.ones, (self.features,))
        bias = self.param('bias', nn.initializers.zeros, (self.features,))
        mean = self.param('mean', nn.initializers.zeros, (self.features,))
        var = self.param('var', nn.initializers.ones, (self.features,))
        g = scale / jnp.sqrt(var + BN_EPS)
        y = jax.lax.conv_general_dilated(
            x, kernel * g, window_strides=(self.stride, self.stride),
            padding=((ph, ph), (pw, pw)), dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
            precision=PRECISION)
        return jax.nn.relu(y + (bias - mean * g))


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg3x3(excl. pad)-1x1 -> 224 + pool_features."""

    pool_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = BasicConv(64, 1, name='branch1x1')(x)
        b5 = BasicConv(48, 1, name='branch5x5_1')(x)
        b5 = BasicConv(64, 5, padding=2, name='branch5x5_2')(b5)
        b3 = BasicConv(64, 1, name='branch3x3dbl_1')(x)
        b3 = BasicConv(96, 3, padding=1, name='branch3x3dbl_2')(b3)
        b3 = BasicConv(96, 3, padding=1, name='branch3x3dbl_3')(b3)
        bp = BasicConv(self.pool_features, 1, name='branch_pool')(avg_pool_exclude_pad(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """35 -> 17 reduction (Mixed_6a): 3x3/2 | 1x1-3x3-3x3/2 | maxpool3x3/2 -> 480 + C_in."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = BasicConv(384, 3, stride=2, name='branch3x3')(x)
        bd = BasicConv(64, 1, name='branch3x3dbl_1')(x)
        bd = BasicConv(96, 3, padding=1, name='branch3x3dbl_2')(bd)
        bd = BasicConv(96, 3, stride=2, name='branch3x3dbl_3')(bd)
        return jnp.concatenate([b3, bd, max_pool(x, 3, 2)], axis=-1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions -> 768 channels."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c7 = self.channels_7x7
        row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))  # (kernel, padding) of 1x7 and 7x1
        b1 = BasicConv(192, 1, name='branch1x1')(x)
        b7 = BasicConv(c7, 1, name='branch7x7_1')(x)
        b7 = BasicConv(c7, row[0], padding=row[1], name='branch7x7_2')(b7)
        b7 = BasicConv(192, col[0], padding=col[1], name='branch7x7_3')(b7)
        bd = BasicConv(c7, 1, name='branch7x7dbl_1')(x)
        for i, (kern, pad) in enumerate((col, row, col), start=2):
            bd = BasicConv(c7, kern, padding=pad, name=f'branch7x7dbl_{i}')(bd)
        bd = BasicConv(192, row[0], padding=row[1], name='branch7x7dbl_5')(bd)
        bp = BasicConv(192, 1, name='branch_pool')(avg_pool_exclude_pad(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """17 -> 8 reduction (Mixed_7a): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool3x3/2."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = BasicConv(192, 1, name='branch3x3_1')(x)
        b3 = BasicConv(320, 3, stride=2, name='branch3x3_2')(b3)
        b7 = BasicConv(192, 1, name='branch7x7x3_1')(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
        b7 = BasicConv(192, 3, stride=2, name='branch7x7x3_4')(b7)
        return jnp.concatenate([b3, b7, max_pool(x, 3, 2)], axis=-1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3/3x1 branches -> 2048 channels.

    ``pool='avg'`` (Mixed_7b: average excluding padding) or ``'max'`` (Mixed_7c: 3x3 max pool,
    stride 1, pad 1 — a quirk of the 2015 TF graph that FID inherits).
    """

    pool: str = 'avg'

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = BasicConv(320, 1, name='branch1x1')(x)
        b3 = BasicConv(384, 1, name='branch3x3_1')(x)
        b3 = jnp.concatenate([
            BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
            BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3)], axis=-1)
        bd = BasicConv(448, 1, name='branch3x3dbl_1')(x)
        bd = BasicConv(384, 3, padding=1, name='branch3x3dbl_2')(bd)
        bd = jnp.concatenate([
            BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
            BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd)], axis=-1)
        if self.pool == 'avg':
            pooled = avg_pool_exclude_pad(x)
        elif self.pool == 'max':
            pooled = max_pool(x, 3, 1, 1)
        else:
            raise ValueError(f"pool must be 'avg' or 'max', got {self.pool!r}")
        bp = BasicConv(192, 1, name='branch_pool')(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """The FID Inception graph. Input (N, H, W, 3) in [-1, 1] (see ``preprocess``).

    Returns a dict with ``pool_3`` (N, 2048) and, if ``with_logits``, ``logits`` (N, 1008).
    Spatial sizes for a 299x299 input: 149, 147, 147, 73, 73, 71, 35 (Mixed_5*), 17 (Mixed_6*),
    8 (Mixed_7*).
    """

    @nn.compact
    def __call__(self, x: jax.Array, with_logits: bool = True) -> dict[str, jax.Array]:
        x = BasicConv(32, 3, stride=2, name='Conv2d_1a_3x3')(x)
        x = BasicConv(32, 3, name='Conv2d_2a_3x3')(x)
        x = BasicConv(64, 3, padding=1, name='Conv2d_2b_3x3')(x)
        x = max_pool(x, 3, 2)
        x = BasicConv(80, 1, name='Conv2d_3b_1x1')(x)
        x = BasicConv(192, 3, name='Conv2d_4a_3x3')(x)
        x = max_pool(x, 3, 2)
        for name, pf in (('Mixed_5b', 32), ('Mixed_5c', 64), ('Mixed_5d', 64)):
            x = InceptionA(pf, name=name)(x)
        x = InceptionB(name='Mixed_6a')(x)
        for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160),
                         ('Mixed_6e', 192)):
            x = InceptionC(c7, name=name)(x)
        x = InceptionD(name='Mixed_7a')(x)
        x = InceptionE('avg', name='Mixed_7b')(x)
        x = InceptionE('max', name='Mixed_7c')(x)
        pool = jnp.mean(x, axis=(1, 2))
        out = {'pool_3': pool}
        fc = nn.Dense(NUM_LOGITS, precision=PRECISION, name='fc')
        if with_logits or self.is_initializing():
            out['logits'] = fc(pool)
        return out


def init_params(seed: int = 0, image_size: int = INCEPTION_SIZE) -> dict:
    """Random parameters with the right tree (for tests and benchmarks only)."""
    x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    return FIDInceptionV3().init(jax.random.PRNGKey(seed), x)['params']


def param_shapes() -> dict[str, tuple[int, ...]]:
    """Flat {'Mixed_5b/branch1x1/kernel': shape, ...} of the parameter tree, without compute."""
    return dict(_param_shapes())


@functools.cache
def _param_shapes() -> tuple[tuple[str, tuple[int, ...]], ...]:
    x = jax.ShapeDtypeStruct((1, INCEPTION_SIZE, INCEPTION_SIZE, 3), jnp.float32)
    tree = jax.eval_shape(lambda: FIDInceptionV3().init(jax.random.PRNGKey(0), x))['params']
    return tuple(('/'.join(k), tuple(v.shape)) for k, v in flatten(tree).items())


def flatten(tree: dict, prefix: Sequence[str] = ()) -> dict[tuple[str, ...], object]:
    """Nested dict -> {path tuple: leaf}."""
    flat: dict[tuple[str, ...], object] = {}
    for key, val in tree.items():
        path = (*prefix, str(key))
        if isinstance(val, dict) or hasattr(val, 'items'):
            flat.update(flatten(val, path))
        else:
            flat[path] = val
    return flat


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    """{'a/b/c': leaf} -> nested dict."""
    tree: dict = {}
    for key, val in flat.items():
        *parents, leaf = key.split('/')
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = val
    return tree


def make_apply_fn(resize: bool = True, with_logits: bool = True):
    """Jitted ``(params, images) -> {'pool_3', 'logits'}`` including ``preprocess``."""
    model = FIDInceptionV3()

    @jax.jit
    def apply(params: dict, images: jax.Array) -> dict[str, jax.Array]:
        return model.apply({'params': params}, preprocess(images, resize), with_logits)

    return apply
