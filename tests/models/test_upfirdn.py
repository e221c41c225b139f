"""FIR resampling checked against independent numpy/scipy computations."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal

from models import upfirdn

FIR = (1, 3, 3, 1)
EPS32 = float(np.finfo(np.float32).eps)


def _np_upfirdn(img: np.ndarray, k2d: np.ndarray, up: int, down: int, pad0: int,
                pad1: int) -> np.ndarray:
    """Definition on one (H, W) plane: zero-stuff, pad, true 2-D convolution (valid), decimate."""
    h, w = img.shape
    stuffed = np.zeros((h * up, w * up))
    stuffed[::up, ::up] = img
    padded = np.pad(stuffed, ((pad0, pad1), (pad0, pad1)))
    return signal.convolve2d(padded, k2d, mode='valid')[::down, ::down]


def _per_plane(fn, x: np.ndarray) -> np.ndarray:
    b, _, _, c = x.shape
    planes = [[fn(x[i, :, :, j]) for j in range(c)] for i in range(b)]
    return np.stack([np.stack(p, axis=-1) for p in planes])


@pytest.mark.parametrize(('up', 'down', 'pad0', 'pad1'),
                         [(1, 1, 0, 0), (2, 1, 2, 1), (1, 2, 1, 1), (2, 2, 1, 2), (3, 1, 1, 0)])
def test_upfirdn2d_matches_definition(up: int, down: int, pad0: int, pad1: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
    k2d = rng.normal(size=(4, 4)).astype(np.float32)  # asymmetric: checks the kernel flip
    got = np.asarray(upfirdn.upfirdn2d(jnp.asarray(x), k2d, up, down, pad0, pad1))
    want = _per_plane(lambda p: _np_upfirdn(p, k2d, up, down, pad0, pad1), x)
    # float32 sums of <= 16 products: <= 16 eps32 of sum |terms| (the same filter on |x|, |k|)
    mag = _per_plane(lambda p: _np_upfirdn(np.abs(p), np.abs(k2d), up, down, pad0, pad1), x)
    np.testing.assert_allclose(got, want, rtol=0, atol=16 * EPS32 * mag.max())


@pytest.mark.parametrize(('up', 'down', 'pad0', 'pad1'),
                         [(1, 1, 0, 0), (2, 1, 2, 1), (1, 2, 1, 1), (2, 2, 1, 2), (3, 1, 1, 0)])
def test_separable_taps_match_the_outer_product_kernel(up, down, pad0, pad1) -> None:
    """1-D taps k run as two 1-D passes; the definition convolves with outer(k, k)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
    k = rng.normal(size=4).astype(np.float32)  # asymmetric: checks the flip on both axes
    k2d = np.outer(k, k)
    got = np.asarray(upfirdn.upfirdn2d(jnp.asarray(x), k, up, down, pad0, pad1))
    want = _per_plane(lambda p: _np_upfirdn(p, k2d, up, down, pad0, pad1), x)
    mag = _per_plane(lambda p: _np_upfirdn(np.abs(p), np.abs(k2d), up, down, pad0, pad1), x)
    # two float32 passes of <= 4 products each (plus the rounding of k_i k_j): 16 eps32
    np.testing.assert_allclose(got, want, rtol=0, atol=16 * EPS32 * mag.max())


def test_setup_kernel() -> None:
    k = upfirdn.setup_kernel(FIR)
    np.testing.assert_allclose(k, np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0)


def test_constant_image_up_down() -> None:
    """Upsampling and downsampling keep a constant image constant away from the zero border."""
    x = jnp.full((1, 8, 8, 2), 3.0)
    up = np.asarray(upfirdn.upsample_2d(x, FIR))
    down = np.asarray(upfirdn.downsample_2d(x, FIR))
    assert up.shape == (1, 16, 16, 2) and down.shape == (1, 4, 4, 2)
    # dyadic taps (k / 64) times 3 and their sums are exact in float32; an ulp allowed
    np.testing.assert_allclose(up[:, 2:-2, 2:-2], 3.0, rtol=EPS32)
    np.testing.assert_allclose(down[:, 1:-1, 1:-1], 3.0, rtol=EPS32)
    round_trip = np.asarray(upfirdn.downsample_2d(upfirdn.upsample_2d(x, FIR), FIR))
    np.testing.assert_allclose(round_trip[:, 2:-2, 2:-2], 3.0, rtol=EPS32)
    # Nearest-neighbour kernel: upsampling is exact pixel repetition.
    ramp = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_allclose(upfirdn.upsample_2d(ramp, None),
                               upfirdn.naive_upsample_2d(ramp), rtol=EPS32)
    np.testing.assert_allclose(upfirdn.downsample_2d(ramp, None),
                               upfirdn.naive_downsample_2d(ramp), rtol=EPS32)


def _np_conv_same(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """HWIO cross-correlation with zero 'SAME' padding, NHWC, numpy/scipy."""
    b, _, _, cin = x.shape
    out = []
    for i in range(b):
        chans = [sum(signal.correlate2d(x[i, :, :, c], w[:, :, c, o], mode='same')
                     for c in range(cin)) for o in range(w.shape[-1])]
        out.append(np.stack(chans, axis=-1))
    return np.stack(out)


def test_fused_upsample_conv() -> None:
    """Fused op = full correlation of the zero-stuffed input, then the x4 FIR with pads (1, 1)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 6, 6, 2)).astype(np.float32)
    w = rng.normal(size=(3, 3, 2, 3)).astype(np.float32)
    got = np.asarray(upfirdn.upsample_conv_2d(jnp.asarray(x), jnp.asarray(w), k=FIR))
    assert got.shape == (1, 12, 12, 3)
    k4 = np.outer(FIR, FIR) / 64.0 * 4.0
    want = np.zeros_like(got)
    for o in range(3):
        acc = 0.0
        for c in range(2):
            stuffed = np.zeros((11, 11))
            stuffed[::2, ::2] = x[0, :, :, c]
            acc = acc + signal.correlate2d(stuffed, w[:, :, c, o], mode='full')
        want[0, :, :, o] = signal.convolve2d(np.pad(acc, 1), k4, mode='valid')
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # Away from the border it equals FIR upsampling followed by a 'SAME' 3x3 convolution.
    seq = _np_conv_same(np.asarray(upfirdn.upsample_2d(jnp.asarray(x), FIR)), w)
    np.testing.assert_allclose(got[:, 3:-3, 3:-3], seq[:, 3:-3, 3:-3], rtol=1e-4, atol=1e-4)


def test_fused_conv_downsample() -> None:
    """Fused op = FIR with pads (2, 2), then a VALID stride-2 correlation."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 8, 8, 2)).astype(np.float32)
    w = rng.normal(size=(3, 3, 2, 3)).astype(np.float32)
    got = np.asarray(upfirdn.conv_downsample_2d(jnp.asarray(x), jnp.asarray(w), k=FIR))
    assert got.shape == (1, 4, 4, 3)
    k1 = np.outer(FIR, FIR) / 64.0
    want = np.zeros_like(got)
    for o in range(3):
        acc = 0.0
        for c in range(2):
            filt = signal.convolve2d(np.pad(x[0, :, :, c], 2), k1, mode='valid')
            acc = acc + signal.correlate2d(filt, w[:, :, c, o], mode='valid')
        want[0, :, :, o] = acc[::2, ::2]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conv2d_module_params() -> None:
    import jax

    x = jnp.ones((2, 8, 8, 4))
    for kwargs, size in (({'up': True}, 16), ({'down': True}, 4), ({}, 8)):
        module = upfirdn.Conv2d(5, kernel=3, **kwargs)
        variables = module.init(jax.random.PRNGKey(0), x)
        shapes = jax.tree_util.tree_map(jnp.shape, variables['params'])
        assert shapes == {'weight': (3, 3, 4, 5), 'bias': (5,)}
        assert module.apply(variables, x).shape == (2, size, size, 5)
