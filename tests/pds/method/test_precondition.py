"""Preconditioner identities (M = C D of PDS, arXiv 2207.02196, as its official code
github.com/fudan-zvg/PDS applies it)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pds.analytic.gaussian_field import GaussianField
from pds.method import masks
from pds.method.pds_preconditioner import (
    drift_complex,
    hermitian_symmetrize,
    make_preconditioner,
    noise_complex,
)

H, W, C = 8, 6, 3
EPS32 = float(np.finfo(np.float32).eps)


def fft_atol(n_transforms, ref):
    """float32 FFT rounding: ~log2(H W) eps32 per transform, of the largest value."""
    return n_transforms * np.log2(H * W) * EPS32 * float(np.max(np.abs(ref)))


def data_gains(alpha=5.0):
    x = GaussianField(variance=(0.04, 0.02, 0.03)).sample(np.random.default_rng(0), 50, H, W)
    r = masks.frequency_gain(masks.frequency_statistic(x), alpha)
    d = masks.space_gain(masks.space_statistic(x), alpha)
    return r, d


def rand(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def test_data_frequency_gain_is_hermitian():
    r, _ = data_gains()
    # R(k), R(-k): one float64 value cast to float32 twice, an ulp apart at most
    np.testing.assert_allclose(hermitian_symmetrize(r), r, rtol=EPS32)
    assert r.min() >= 1.0 and r.max() <= 5.0 / 4.0  # float64 <= 5/4, cast monotonically


@pytest.mark.parametrize('with_space', [False, True])
def test_rfft_path_equals_complex_formulation(with_space):
    r, d = data_gains()
    d = d if with_space else None
    p = make_preconditioner(r, d)
    g = rand((4, H, W, C), 1)
    want = noise_complex(r, d, g)
    np.testing.assert_allclose(p.noise(g), want, atol=fft_atol(2, want))
    want = drift_complex(r, d, g)
    np.testing.assert_allclose(p.drift(g), want, atol=fft_atol(4, want))


def test_non_hermitian_gain_matches_real_part_of_complex_filter():
    r = 1.0 + np.random.default_rng(3).uniform(size=(C, H, W)).astype(np.float32)
    g = rand((2, H, W, C), 4)
    want = noise_complex(r, None, g)
    np.testing.assert_allclose(make_preconditioner(r).noise(g), want, atol=fft_atol(2, want))


def dense(fn, shape):
    """The matrix of a linear map on one image, columns = images of basis vectors."""
    n = int(np.prod(shape))
    basis = jnp.eye(n, dtype=jnp.float32).reshape((n, *shape))
    return np.asarray(fn(basis)).reshape(n, n).T


def test_m_is_real_symmetric_and_drift_is_m_mt():
    r, d = data_gains()
    freq_only = make_preconditioner(r)
    m = dense(lambda z: freq_only.noise(z), (H, W, C))
    np.testing.assert_allclose(m, m.T, atol=fft_atol(2, m))
    full = make_preconditioner(r, d)
    m = dense(lambda z: full.noise(z), (H, W, C))
    mmt = dense(lambda g: full.drift(g), (H, W, C))
    # drift: 4 transforms; m @ m.T: twice the 2-transform error of m plus a 144-term float32
    # sum (~sqrt(144) eps32 of |m|^2 row sums ~ max |mmt|): ~8 transforms in all
    np.testing.assert_allclose(mmt, m @ m.T, atol=fft_atol(8, mmt))
    assert np.linalg.eigvalsh(mmt).min() > 0.9  # positive definite, gains >= 1


def test_gain_one_masks_drop_to_identity():
    ones = np.ones((C, H, W), np.float32)
    p = make_preconditioner(ones, ones)
    assert p.freq is None and p.space is None
    g = rand((2, H, W, C), 5)
    assert np.array_equal(p.noise(g), g) and np.array_equal(p.drift(g), g)
    # alpha transform of a constant statistic is gain 1 everywhere
    assert np.all(masks.frequency_gain(np.full((C, H, W), 3.0), 5.0) == 1.0)


def test_legacy_transform():
    f = np.full((1, 2, 2), 2.0)
    # float64 gains cast to float32: half an ulp
    np.testing.assert_allclose(masks.frequency_gain(f, 5.0, 'legacy'), 5.0 / 6.0, rtol=EPS32 / 2)
    np.testing.assert_allclose(masks.frequency_gain(f, 5.0, 'normalized'), 1.0, rtol=EPS32 / 2)
    np.testing.assert_allclose(masks.space_gain(np.full((1, 2, 2), 0.25), 5.0, 'legacy'), 4.0,
                               rtol=EPS32 / 2)


def test_statistics_match_definition():
    x = np.random.default_rng(2).uniform(size=(5, 4, 4, 2))
    f = masks.frequency_statistic(x)
    direct = np.log1p(np.mean([np.abs(np.fft.fft2(img[:, :, 1])) ** 2 for img in x], axis=0))
    # float64 statistics cast to float32: half an ulp (float64 rounding is far below)
    np.testing.assert_allclose(f[1], direct, rtol=EPS32)
    np.testing.assert_allclose(masks.space_statistic(x)[0], np.mean(x[..., 0] ** 2, 0), rtol=EPS32)


def test_jit_friendly():
    r, d = data_gains()
    p = make_preconditioner(r, d)
    g = rand((2, H, W, C), 6)
    want = p.drift(g)  # jit may fuse differently: the 4-transform rounding at most
    np.testing.assert_allclose(jax.jit(lambda q, v: q.drift(v))(p, g), want, atol=fft_atol(4, want))


def test_pds_without_masks_warns_that_it_is_the_identity(caplog):
    from configs.photo.photos_16 import get_config
    from pds.method import precondition

    config = get_config()  # a network config: both masks ''
    config.sampling.precondition = 'pds'
    with caplog.at_level('WARNING'):
        precondition.preconditioner_from_config(config, (16, 16, 3), lambda n: None)
    assert 'M is the identity' in caplog.text
    caplog.clear()
    from tests.helpers.paths import ROOT

    config.sampling.pds.freq_mask = f'{ROOT}/weights/photos_16/stats/freq_mask.npy'
    with caplog.at_level('WARNING'):
        precondition.preconditioner_from_config(config, (16, 16, 3), lambda n: None)
    assert 'M is the identity' not in caplog.text
