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
