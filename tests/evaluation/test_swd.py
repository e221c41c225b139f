"""SWD (evaluation/swd.py): the sliced W1 against POT and scipy on fixed inputs, the exact
small-sample bias of two draws of one Gaussian (and an SE that matches the spread of
independent repeats), the Laplacian pyramid (reconstruction, constants, an independent
filter), the descriptors, and the per-set normalisation's invariance."""

import numpy as np
import pytest
from scipy import ndimage, stats

from evaluation import swd


def fixed_points(n, m, d, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d)) @ rng.standard_normal((d, d))
    b = rng.gamma(2.0, 1.0, (m, d)) + 0.3
    return a, b, swd.random_directions(d, 64, rng)


def test_sliced_w1_equals_pot_on_fixed_inputs(monkeypatch):
    # POT's numpy backend only: importing its torch / jax / TF backends takes ~15 s here
    for lib in ('PYTORCH', 'JAX', 'TENSORFLOW', 'CUPY'):
        monkeypatch.setenv(f'POT_BACKEND_DISABLE_{lib}', '1')
    ot = pytest.importorskip('ot', reason='POT (requirements-test.txt) is the independent '
                                          'sliced Wasserstein implementation')
    for n, m in ((300, 300), (300, 170)):
        a, b, dirs = fixed_points(n, m, 12)
        ours = swd.sliced_w1(a, b, dirs).mean()
        theirs = ot.sliced_wasserstein_distance(a, b, projections=dirs, p=1)
        # float64 throughout: the two differ by summation order only (~1e-15 relative)
        np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_w1_per_direction_equals_scipy_for_unequal_sizes():
    a, b, dirs = fixed_points(257, 100, 5, seed=1)
    ours = swd.sliced_w1(a, b, dirs)
    theirs = [stats.wasserstein_distance(a @ t, b @ t) for t in dirs.T]
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    # float32 projections (the default in sliced_w1_with_se): relative error ~ 1e-7 sqrt(d)
    res = swd.sliced_w1_with_se(a[:200], b[:100], np.zeros(200, int), np.zeros(100, int), 1,
                                np.random.default_rng(3), num_directions=8, repeats=2)
    dirs2 = swd.random_directions(5, 4, np.random.default_rng(3))
    ref = [stats.wasserstein_distance(a[:200] @ t, b[:100] @ t) for t in dirs2.T]
    np.testing.assert_allclose(res.per_direction[:4], ref, rtol=1e-5)


def test_expected_w1_is_exact_at_small_n():
    # Monte Carlo of W1 = mean |a_(i) - b_(i)| for n = 4 standard normals, 200k pairs
    rng = np.random.default_rng(0)
    a = np.sort(rng.standard_normal((200_000, 4)), axis=1)
    b = np.sort(rng.standard_normal((200_000, 4)), axis=1)
    w = np.abs(a - b).mean(axis=1)
    se = w.std() / np.sqrt(len(w))
    exact = swd.expected_w1_gaussian(4)
    assert abs(w.mean() - exact) < 4 * se
    # the large-n form sqrt(2/pi) sqrt(2/n) int sqrt(F(1-F)) is off at n = 4: this test sees it
    x = np.linspace(-9, 9, 4001)
    f = stats.norm.cdf(x)
    asymptotic = np.sqrt(2 / np.pi) * np.sqrt(2 / 4) * np.trapezoid(np.sqrt(f * (1 - f)), x)
    assert abs(asymptotic - exact) > 10 * se


def test_two_draws_of_one_gaussian_give_the_stated_bias_within_se():
    n, d, repeats = 1000, 16, 24
    scales = np.linspace(0.5, 2.0, d)  # N(0, diag(scales^2)): projected std sqrt(t' S t)
    values, ses, expected = [], [], []
    e_n = swd.expected_w1_gaussian(n)
    for r in range(repeats):
        rng = np.random.default_rng(r)
        a = rng.standard_normal((n, d)) * scales
        b = rng.standard_normal((n, d)) * scales
        groups = np.arange(n) % 10
        state = np.random.default_rng(100 + r)
        res = swd.sliced_w1_with_se(a, b, groups, groups, 10, state, 128, 4, dtype=np.float64)
        # the same directions, drawn again: per direction E W1 = e(n) * projected std
        replay = np.random.default_rng(100 + r)
        stds = np.concatenate([np.linalg.norm(swd.random_directions(d, 32, replay)
                                              * scales[:, None], axis=0) for _ in range(4)])
        expected.append(e_n * stds.mean())
        values.append(res.value)
        ses.append(res.se)
    values, ses, expected = map(np.array, (values, ses, expected))
    dev = values - expected
    se_mean = dev.std(ddof=1) / np.sqrt(repeats)
    assert abs(dev.mean()) < 3 * se_mean
    # a bias of another sample size (n / 2 or 2 n) is far outside that band
    for other in (n // 2, 2 * n):
        shifted = values - expected * swd.expected_w1_gaussian(other) / e_n
        assert abs(shifted.mean()) > 6 * se_mean
    # the stated SE is the spread of independent repeats (its estimate has ~9 dof)
    assert 0.6 < ses.mean() / dev.std(ddof=1) < 1.6
    assert np.mean(np.abs(dev) < 2 * ses) >= 0.8


# ------------------------------------------------------------------ Laplacian pyramid


def test_pyramid_reconstructs_the_images():
    x = np.random.default_rng(0).random((3, 32, 32, 2))
    pyr = swd.laplacian_pyramid(x, min_size=8)
    assert [p.shape[1] for p in pyr] == [32, 16, 8]
    np.testing.assert_allclose(swd.reconstruct(pyr), x, rtol=0, atol=1e-13)


def test_constant_images_have_zero_bands():
    x = np.full((2, 32, 32, 3), 0.37)
    pyr = swd.laplacian_pyramid(x, min_size=8)
    for band in pyr[:-1]:
        np.testing.assert_allclose(band, 0.0, atol=1e-14)
    np.testing.assert_allclose(pyr[-1], 0.37, rtol=1e-14)


def test_down_and_up_equal_scipy_filters():
    x = np.random.default_rng(1).random((2, 16, 16, 3))
    k = np.array([1, 4, 6, 4, 1]) / 16
    blur = ndimage.correlate1d(ndimage.correlate1d(x, k, axis=1, mode='mirror'), k, axis=2,
                               mode='mirror')
    np.testing.assert_allclose(swd.downsample(x), blur[:, ::2, ::2], rtol=1e-13)
    y = x[:, :8, :8]
    z = np.zeros((2, 16, 16, 3))
    z[:, ::2, ::2] = y
    up = ndimage.correlate1d(ndimage.correlate1d(z, 2 * k, axis=1, mode='mirror'), 2 * k,
                             axis=2, mode='mirror')
    np.testing.assert_allclose(swd.upsample(y), up, rtol=1e-13)


def test_pyramid_size_errors():
    with pytest.raises(ValueError, match='16 times a power of two'):
        swd.laplacian_pyramid(np.zeros((1, 24, 24, 3)))
    with pytest.raises(ValueError, match='16 times a power of two'):
        swd.laplacian_pyramid(np.zeros((1, 8, 8, 3)))


# ------------------------------------------------------------------ descriptors and SWD


def test_descriptors_are_the_drawn_neighbourhoods():
    level = np.random.default_rng(2).random((3, 16, 16, 3))
    desc = swd.patch_descriptors(level, 5, np.random.default_rng(9))
    rng = np.random.default_rng(9)
    ys, xs = rng.integers(0, 10, (3, 5)), rng.integers(0, 10, (3, 5))
    for i in range(3):
        for j in range(5):
            y, x = ys[i, j], xs[i, j]
            np.testing.assert_array_equal(desc[5 * i + j], level[i, y:y + 7, x:x + 7])


def test_per_set_normalisation_ignores_a_colour_change_and_first_does_not():
    rng = np.random.default_rng(4)
    a, b = rng.random((40, 32, 32, 3)), rng.random((40, 32, 32, 3)) ** 2
    gain, shift = np.array([0.5, 1.5, 2.0]), np.array([0.1, -0.2, 0.3])
    kw = {'descriptors_per_image': 16, 'num_directions': 64, 'groups': 4}
    base = swd.swd(a, b, 1, **kw)
    moved = swd.swd(a, b * gain + shift, 1, **kw)
    # float32 descriptors: the normalised values agree to ~1e-6 relative
    np.testing.assert_allclose(moved.levels, base.levels, rtol=1e-4)
    first = swd.swd(a, b, 1, normalize='first', **kw)
    first_moved = swd.swd(a, b * gain + shift, 1, normalize='first', **kw)
    assert first_moved.value > first.value + 5 * np.hypot(first.se, first_moved.se)
    assert base.level_sizes == (32, 16) and len(base.level_se) == 2


def mixture_images(rng, n):
    """Each image from one of two unlike components (as patches of unlike photographs are):
    dark fine noise, or brighter smoothed noise; which one is a coin flip per image."""
    dark = 0.01 * rng.standard_normal((n, 16, 16, 3))
    bright = 1.0 + ndimage.uniform_filter(rng.standard_normal((n, 16, 16, 3)),
                                          size=(1, 3, 3, 1))
    return np.where(rng.random(n)[:, None, None, None] < 0.5, dark, bright)


def test_swd_se_matches_the_spread_of_repeats():
    # images from a two-component mixture, normalised per set: the SE's subsets are
    # normalised on their own (on the 16x16 photo patches, normalising them with the whole
    # sets' statistics stated 2x the spread: benchmarks/photo_swd_floor.py --se-repeats)
    values, ses = [], []
    for r in range(16):
        rng = np.random.default_rng(50 + r)
        res = swd.swd(mixture_images(rng, 60), mixture_images(rng, 60), r,
                      descriptors_per_image=8, num_directions=64, groups=6)
        values.append(res.value)
        ses.append(res.se)
    ratio = np.mean(ses) / np.std(values, ddof=1)
    assert 0.6 < ratio < 1.6


def test_swd_input_errors():
    x = np.zeros((20, 16, 16, 3))
    with pytest.raises(ValueError, match='shapes differ'):
        swd.swd(x, np.zeros((20, 32, 32, 3)))
    with pytest.raises(ValueError, match='at least 2 groups'):
        swd.swd(x[:5], x, groups=10)
    with pytest.raises(ValueError, match='normalize'):
        swd.swd(x, x, normalize='none', groups=2)
