"""The Flax FID Inception against pytorch-fid's, the resize and the pooling helpers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from evaluation import inception
from evaluation.inception_weights import load_inception_params, main
from evaluation.metrics import features

EPS32 = float(np.finfo(np.float32).eps)


def _resize_reference(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Pixel-by-pixel half-pixel bilinear resize of one (H, W, C) image (written from the
    definition: sample at (i + .5) * in/out - .5, clamp to [0, in - 1], lerp 2x2 neighbours)."""
    h, w, _ = img.shape
    out = np.zeros((out_h, out_w, img.shape[2]))
    for i in range(out_h):
        y = min(max((i + 0.5) * h / out_h - 0.5, 0.0), h - 1)
        y0 = int(np.floor(y))
        y1, wy = min(y0 + 1, h - 1), y - y0
        for j in range(out_w):
            x = min(max((j + 0.5) * w / out_w - 0.5, 0.0), w - 1)
            x0 = int(np.floor(x))
            x1, wx = min(x0 + 1, w - 1), x - x0
            top = (1 - wx) * img[y0, x0] + wx * img[y0, x1]
            bot = (1 - wx) * img[y1, x0] + wx * img[y1, x1]
            out[i, j] = (1 - wy) * top + wy * bot
    return out


@pytest.mark.parametrize('in_hw,out_hw', [((5, 7), (11, 13)), ((9, 8), (4, 3)), ((6, 6), (6, 6))])
def test_resize_matches_pixel_loop(in_hw, out_hw):
    img = np.random.default_rng(1).uniform(size=(2, *in_hw, 3))
    got = np.asarray(inception.resize_bilinear(jnp.asarray(img, jnp.float32), out_hw))
    # values in [0, 1]: float32 rounding of the input and of the convex weights, then two
    # 2-tap lerps in float32: ~4 eps32
    for n in range(2):
        np.testing.assert_allclose(got[n], _resize_reference(img[n], *out_hw), atol=8 * EPS32)


def test_resize_upsample_matches_jax_image_resize():
    # For upsampling, jax.image.resize's triangle kernel (half-pixel centres, out-of-range
    # taps dropped and weights renormalised) equals the clamped bilinear rule.
    img = np.random.default_rng(2).uniform(size=(1, 32, 32, 3)).astype(np.float32)
    got = inception.resize_bilinear(jnp.asarray(img))
    ref = jax.image.resize(jnp.asarray(img), (1, 299, 299, 3), 'linear', antialias=False)
    # jax.image.resize forms its weights in float32 from coordinates up to 32: ~32 eps32 each axis
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=64 * EPS32)


@pytest.mark.slow
def test_resize_matches_torch_interpolate():
    torch = pytest.importorskip('torch', reason='torch not installed (requirements-test.txt)')
    img = np.random.default_rng(3).uniform(size=(2, 32, 24, 3)).astype(np.float32)
    for size in [(299, 299), (17, 10)]:
        ref = torch.nn.functional.interpolate(torch.from_numpy(img).permute(0, 3, 1, 2), size=size,
                                              mode='bilinear', align_corners=False)
        got = inception.resize_bilinear(jnp.asarray(img), size)
        # torch forms source coordinates (up to 32) in float32: ~32 eps32 per axis, values <= 1
        np.testing.assert_allclose(np.asarray(got), ref.permute(0, 2, 3, 1).numpy(),
                                   atol=64 * EPS32)


def test_preprocess_uint8_and_float_agree():
    img = np.random.default_rng(4).integers(0, 256, size=(1, 8, 8, 3), dtype=np.uint8)
    a = inception.preprocess(jnp.asarray(img))
    b = inception.preprocess(jnp.asarray(img, jnp.float32) / 255.0)
    assert a.shape == (1, 299, 299, 3)
    # the same x / 255 up to an ulp (divide vs reciprocal multiply), doubled by 2 x - 1
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=4 * EPS32)
    # convex float32 weights sum to 1 within ~3 eps32 per axis pass: 2 x - 1 within ~8 eps32
    assert float(a.min()) >= -1.0 - 8 * EPS32 and float(a.max()) <= 1.0 + 8 * EPS32


def test_avg_pool_excludes_padding():
    x = np.random.default_rng(5).normal(size=(1, 4, 5, 2)).astype(np.float32)
    got = np.asarray(inception.avg_pool_exclude_pad(jnp.asarray(x)))
    ref = np.zeros_like(x)
    for i in range(4):
        for j in range(5):
            ref[0, i, j] = x[0, max(i - 1, 0): i + 2, max(j - 1, 0): j + 2].mean(axis=(0, 1))
    # float32 means of <= 9 terms on both sides: <= 9 eps32 of the largest |x|
    np.testing.assert_allclose(got, ref, atol=9 * EPS32 * np.abs(x).max())


def test_max_pool_padded():
    x = -np.abs(np.random.default_rng(6).normal(size=(1, 3, 3, 1))).astype(np.float32)
    got = np.asarray(inception.max_pool(jnp.asarray(x), 3, 1, 1))
    # all inputs negative: zero padding would leak 0s into the max, -inf padding must not
    assert got.max() < 0
    assert got[0, 0, 0, 0] == x[0, :2, :2].max()


def test_param_tree_matches_init():
    shapes = inception.param_shapes()
    assert shapes['fc/kernel'] == (2048, 1008)
    assert shapes['Conv2d_1a_3x3/kernel'] == (3, 3, 3, 32)
    assert shapes['Mixed_7c/branch_pool/kernel'] == (1, 1, 2048, 192)
    assert len(shapes) == 94 * 5 + 2  # 94 BasicConv (kernel + 4 BN vectors) + fc


@pytest.mark.slow
def test_matches_pytorch_fid_random_weights(pytorch_fid_reference, tmp_path):
    """End to end: torch state_dict -> .pth -> CLI converter -> loader -> features()."""
    import torch

    wrapper, full = pytorch_fid_reference
    pth = tmp_path / 'random_inception.pth'
    torch.save(full.state_dict(), pth)
    npz = tmp_path / 'inception.npz'
    assert main(['--source', str(pth), '--out', str(npz)]) == 0
    params = load_inception_params(npz)

    images = np.random.default_rng(7).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        pool_ref = wrapper(x)[0].flatten(1)
        logits_ref = full.fc(pool_ref).numpy()
        pool_ref = pool_ref.numpy()
    out = features(params, images, batch_size=2)  # 2 batches, the last one padded
    assert out['pool_3'].shape == (3, 2048) and out['logits'].shape == (3, 1008)
    assert np.abs(pool_ref).mean() > 0.1  # random weights give non-degenerate features
    # float32 convs of fan-in <= 2048 round ~sqrt(2048) eps32 of the activation scale, adding
    # up over ~45 convs in depth: 2048 eps32 (~2.4e-4) of the largest feature; the fc layer
    # maps errors and features alike, so the same for the logits
    tol = 2048 * EPS32
    np.testing.assert_allclose(out['pool_3'], pool_ref, atol=tol * np.abs(pool_ref).max(), rtol=0)
    np.testing.assert_allclose(out['logits'], logits_ref, atol=tol * np.abs(logits_ref).max(),
                               rtol=0)
