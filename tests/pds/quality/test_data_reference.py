"""pds/quality/data_reference.py: the data moments against an independent computation, the
Gaussian model's exact covariance, nearest-neighbour distances and the memorisation check."""

import numpy as np
import pytest

from pds.analytic.fd import FourierMoments
from pds.quality import data_reference as dr


def correlated_images(rng, n, h=4, w=6, c=3):
    """Images with a non-trivial spectrum and cross-channel correlation."""
    z = rng.standard_normal((n, h, w, c))
    x = z + 0.8 * np.roll(z, 1, axis=1) + 0.5 * z[..., :1]
    return (0.3 + 0.1 * x).astype(np.float32)


def test_the_spectrum_is_the_fourier_moments_variance():
    x = correlated_images(np.random.default_rng(0), 300)
    m = dr.data_moments(x, chunk=64)  # chunks: the streaming sums
    fm = FourierMoments(m.mean)
    fm.update(x)
    _, var = fm.mean_and_variance()
    np.testing.assert_allclose(m.spectrum, var, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(m.mean, x.mean(axis=0), rtol=1e-6)


def test_the_cross_spectrum_is_hermitian_with_the_symmetry_of_real_images():
    m = dr.data_moments(correlated_images(np.random.default_rng(1), 200))
    h, w = m.cross.shape[:2]
    np.testing.assert_allclose(m.cross, np.conj(np.swapaxes(m.cross, -1, -2)), atol=1e-15)
    flipped = m.cross[(-np.arange(h)) % h][:, (-np.arange(w)) % w]  # Sigma(-k)
    np.testing.assert_allclose(flipped, np.conj(m.cross), atol=1e-12)


def test_the_gaussian_model_has_the_datas_mean_and_covariance():
    """The model's pixel covariance is Re(F^H Sigma F), the data's circulant covariance: the
    moments of 20,000 model draws match the data's within 5 Monte Carlo SE per entry."""
    data = dr.data_moments(correlated_images(np.random.default_rng(2), 400))
    n = 20000
    got = dr.data_moments(dr.gaussian_model_samples(data, n, seed=3))
    var = data.spectrum
    se_mean = np.sqrt(np.mean(var, axis=(0, 1)) / n)  # per channel: pixel variance / n
    assert np.all(np.abs(got.mean - data.mean) < 5 * se_mean)
    diag = np.einsum('hwcc->hwc', data.cross).real
    se = np.sqrt(diag[..., :, None] * diag[..., None, :] / n)
    assert np.all(np.abs(got.cross - data.cross) < 5 * se)


def test_the_gaussian_model_is_deterministic_in_its_seed():
    data = dr.data_moments(correlated_images(np.random.default_rng(4), 50))
    a, b = (dr.gaussian_model_samples(data, 8, seed=s) for s in (0, 0))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, dr.gaussian_model_samples(data, 8, seed=1))


def test_fourier_fd_of_exact_draws_is_zero_within_its_standard_error():
    data = dr.data_moments(correlated_images(np.random.default_rng(5), 400))
    fd = dr.fourier_fd(dr.gaussian_model_samples(data, 4000, seed=6), data)
    assert abs(fd['fd']) < 4 * fd['fd_se']
    assert fd['fd_plugin'] > fd['fd']  # the plug-in statistic is biased up for exact draws
    shifted = dr.fourier_fd(dr.gaussian_model_samples(data, 4000, seed=6) + 0.05, data)
    # a constant shift of 0.05 adds |DC|^2 = (0.05 sqrt(H W))^2 per channel to the mean term
    assert shifted['fd'] - fd['fd'] == pytest.approx(3 * 0.05**2 * 24, rel=0.05)


def test_nearest_distances_equal_a_brute_force_search():
    rng = np.random.default_rng(7)
    q, bank = rng.random((30, 4, 4, 3)), rng.random((70, 4, 4, 3))
    want = np.sqrt(((q[:, None] - bank[None]) ** 2).mean(axis=(2, 3, 4))).min(axis=1)
    np.testing.assert_allclose(dr.nearest_distances(q, bank, chunk=7), want, rtol=1e-9)


def test_memorisation_tells_copies_from_new_draws():
    rng = np.random.default_rng(8)
    training = rng.random((400, 4, 4, 3))
    held_out = rng.random((200, 4, 4, 3))
    copies = training[:200] + 1e-4 * rng.standard_normal((200, 4, 4, 3))
    fresh = rng.random((200, 4, 4, 3))
    assert dr.memorisation(copies, held_out, training)['samples_below_held_out_q1'] > 0.99
    assert dr.memorisation(fresh, held_out, training)['samples_below_held_out_q1'] < 0.1
    mirrored = training[:200, :, ::-1]  # mirrors count as training images (flip augmentation)
    assert dr.memorisation(mirrored, held_out, training)['samples']['q50'] == 0.0
