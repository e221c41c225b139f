"""The Fourier-basis Frechet distance against a dense pixel-basis computation."""

import numpy as np
import pytest
from scipy.linalg import sqrtm

from pds.analytic.fd import FourierMoments, frechet_distance, noise_floor
from pds.analytic.gaussian_field import GaussianField

H, W = 4, 6
FIELD = GaussianField(mean=(0.5, 0.2), variance=(0.04, 0.01))


def circulant_projection(cov, h, w):
    """Average a (hw x hw) covariance over all cyclic 2-D translations."""
    idx = np.arange(h * w).reshape(h, w)
    out = np.zeros_like(cov)
    for dy in range(h):
        for dx in range(w):
            p = np.roll(np.roll(idx, dy, 0), dx, 1).ravel()
            out += cov[np.ix_(p, p)]
    return out / (h * w)


def dense_fd(x, field):
    total = 0.0
    lam = field.spectrum(H, W)
    fy, fx = np.fft.fft(np.eye(H), norm='ortho'), np.fft.fft(np.eye(W), norm='ortho')
    u = np.kron(fy, fx)
    for c in range(x.shape[-1]):
        v = x[..., c].reshape(len(x), -1)
        mu_s, mu_t = v.mean(0), np.full(H * W, field.mean[c])
        cs = circulant_projection(np.cov(v.T), H, W)
        ct = np.real(u.conj().T @ np.diag(lam[:, :, c].ravel()) @ u)
        covmean = np.real(sqrtm(sqrtm(ct) @ cs @ sqrtm(ct)))
        total += np.sum((mu_s - mu_t) ** 2) + np.trace(cs + ct - 2 * covmean)
    return total


def test_matches_dense_frechet_distance():
    rng = np.random.default_rng(0)
    x = 0.8 * FIELD.sample(rng, 300, H, W) + 0.05 * rng.normal(size=(300, H, W, 2)) + 0.1
    assert frechet_distance(x, FIELD) == pytest.approx(dense_fd(x, FIELD), rel=1e-6)


def test_streaming_equals_one_shot():
    x = FIELD.sample(np.random.default_rng(1), 40, H, W) * 1.3
    acc = FourierMoments(np.asarray(FIELD.mean))
    for part in np.array_split(x, 7):
        acc.update(part)
    assert acc.frechet_distance(FIELD.spectrum(H, W)) == pytest.approx(
        frechet_distance(x, FIELD, chunk=40), rel=1e-10)


def test_noise_floor_shrinks_like_one_over_n():
    """E FD ~ (5/4) sum(lambda) / N for exact samples (mean + variance estimation noise)."""
    total_var = np.sum(FIELD.spectrum(16, 16))
    for n in (50, 200):
        floor, _ = noise_floor(FIELD, n, 16, 16, draws=8)
        assert floor == pytest.approx(1.25 * total_var / n, rel=0.15)


def test_needs_two_samples():
    with pytest.raises(ValueError, match='at least 2'):
        frechet_distance(FIELD.sample(np.random.default_rng(0), 1, H, W), FIELD)


def _repeat(field, n, reps, h, w, transform, seed=0):
    """(plug-in, unbiased, band ratios) of ``reps`` independent n-sample runs."""
    from pds.analytic.fd import FourierMoments

    rng = np.random.default_rng(seed)
    lam = field.spectrum(h, w)
    out = []
    for _ in range(reps):
        m = FourierMoments(np.asarray(field.mean))
        m.update(transform(field.sample(rng, n, h, w)))
        out.append(m.summary(lam))
    return out


def test_expected_floor_is_the_mean_plug_in_fd_of_exact_samples():
    from pds.analytic.fd import expected_floor

    field = GaussianField()
    runs = _repeat(field, 8, 300, 16, 16, lambda x: x)
    fd = np.array([r['frechet_distance'] for r in runs])
    want = expected_floor(field.spectrum(16, 16), 8)
    assert abs(fd.mean() - want) < 3 * fd.std() / np.sqrt(len(fd)), (fd.mean(), want)
    # large n: sum(lambda) / n + sum(lambda) / (4 n) (1 / (2 n) on self-conjugate modes)
    from pds.analytic.fd import self_conjugate

    lam, n = field.spectrum(16, 16), 50_000
    real = self_conjugate(16, 16)[:, :, None]
    want = lam.sum() / n + np.sum(np.where(real, 0.5, 0.25) * lam) / n
    np.testing.assert_allclose(expected_floor(lam, n), want, rtol=1e-3)


@pytest.mark.parametrize('scale, shift', [(1.0, 0.0), (0.9, 0.0), (0.7, 0.02), (1.2, 0.0)])
def test_unbiased_fd_matches_the_population_fd_at_n_8(scale, shift):
    """Samples mu + scale (x - mu) + shift: population FD = sum lambda (scale - 1)^2 plus the
    mean offset's energy H W C shift^2. The plug-in statistic at n = 8 is far off (it is
    ~5 for exact samples); the unbiased one is right within 10% (or its noise, at 0)."""
    field = GaussianField()
    h = w = 16
    lam = field.spectrum(h, w)
    mu = np.asarray(field.mean)
    pop = float(np.sum(lam) * (scale - 1) ** 2 + h * w * 3 * shift**2)
    runs = _repeat(field, 8, 300, h, w, lambda x: mu + scale * (x - mu) + shift, seed=1)
    est = np.array([r['frechet_distance_unbiased'] for r in runs])
    se = est.std() / np.sqrt(len(est))
    assert abs(est.mean() - pop) < max(0.1 * pop, 3 * se), (est.mean(), se, pop)
    ratios = runs[0]['band_variance_ratio']
    mean_ratio = np.mean([[r['band_variance_ratio'][b] for b in ('low', 'mid', 'high')]
                          for r in runs], axis=0)
    np.testing.assert_allclose(mean_ratio, scale**2, rtol=0.05)
    assert set(ratios) == {'low', 'mid', 'high'}


@pytest.mark.parametrize('shift_mean', [False, True])
def test_unbiased_fd_standard_error_matches_the_spread_over_repeated_draws(shift_mean):
    """n = 8 samples of a field scaled by 1.1 (about its mean, or with it): the delta-method
    standard error averages within [0.85, 1.3] of the estimator's standard deviation over
    200 repeats (that SD is itself known to 1 / sqrt(2 * 199) = 5%; with no mean error the
    |m|^2 - s / N plug-in overstates the SE by ~10-20%, measured)."""
    field = GaussianField()
    spec, mu = field.spectrum(16, 16), np.asarray(field.mean)
    rng = np.random.default_rng(0)
    vals, ses = [], []
    for _ in range(200):
        x = field.sample(rng, 8, 16, 16)
        acc = FourierMoments(mean=mu)
        acc.update(x * 1.1 if shift_mean else mu + (x - mu) * 1.1)
        vals.append(acc.unbiased_frechet_distance(spec))
        ses.append(acc.unbiased_fd_standard_error(spec))
    ratio = np.mean(ses) / np.std(vals, ddof=1)
    assert 0.85 < ratio < 1.3, ratio
