"""FID / IS / KID against closed forms and independent numpy computations; stats files."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
import scipy.special

from evaluation import metrics

EPS32, EPS64 = float(np.finfo(np.float32).eps), float(np.finfo(np.float64).eps)


def test_fid_of_set_with_itself_is_zero():
    feats = np.random.default_rng(0).normal(size=(300, 64)) @ np.diag(np.linspace(0.1, 3, 64))
    # tr S1 + tr S2 - 2 tr (S S)^{1/2} cancels: eigh/SVD round ~d eps64 of the traces
    bound = 64 * EPS64 * 2 * np.trace(np.cov(feats.T))
    assert abs(metrics.fid_from_features(feats, feats)) < bound


def test_fid_singular_covariances_with_itself():
    # fewer samples than dimensions: rank-deficient covariance, still real and ~0
    feats = np.random.default_rng(1).normal(size=(20, 50))
    # as above, d eps64 of the traces (a sqrt(eps)-sized null space would not pass)
    assert abs(metrics.fid_from_features(feats, feats)) < 50 * EPS64 * 2 * np.trace(np.cov(feats.T))


def test_fid_diagonal_gaussians_closed_form():
    rng = np.random.default_rng(2)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = rng.uniform(0.1, 4, size=d), rng.uniform(0.1, 4, size=d)
    # diagonal covariances commute: tr sqrt(S1 S2) = sum sqrt(v1 v2), so
    # FID = |mu1 - mu2|^2 + sum (sqrt(v1) - sqrt(v2))^2
    expect = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    got = metrics.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    # float64 cancellation of the traces and |mu1 - mu2|^2: ~d eps64 of their sum
    scale = np.sum((mu1 - mu2) ** 2) + np.sum(v1) + np.sum(v2)
    assert got == pytest.approx(expect, rel=0, abs=d * EPS64 * scale)


def test_fid_rotated_gaussians_closed_form():
    # S1 = Q diag(a) Q^T and S2 = Q diag(b) Q^T share eigenvectors: same formula in that basis
    rng = np.random.default_rng(3)
    d = 32
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a, b = rng.uniform(0.01, 2, size=d), rng.uniform(0.01, 2, size=d)
    got = metrics.frechet_distance(np.zeros(d), q @ np.diag(a) @ q.T, np.ones(d),
                                   q @ np.diag(b) @ q.T)
    scale = d + np.sum(a) + np.sum(b)  # ~d eps64 of |mu1 - mu2|^2 + tr S1 + tr S2, as above
    assert got == pytest.approx(d + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2), rel=0,
                                abs=d * EPS64 * scale)


def test_trace_sqrt_matches_scipy_sqrtm():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(200, 30)), rng.normal(size=(200, 30)) * 2 + 1
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    ref = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    # both float64; Schur-based sqrtm of the d x d (d = 30) product: ~d^2 eps64 relative
    assert metrics.trace_sqrt_product(s1, s2) == pytest.approx(ref, rel=30 * 30 * EPS64)


def test_inception_score_matches_direct_computation():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(100, 1008)) * 3
    mean, std = metrics.inception_score(logits, splits=10)
    scores = []
    for k in range(10):
        p = scipy.special.softmax(logits[10 * k: 10 * (k + 1)], axis=1)
        py = p.mean(axis=0)
        kls = [np.sum(p_i * np.log(p_i / py)) for p_i in p]
        scores.append(np.exp(np.mean(kls)))
    # float64 KL sums over 1008 classes: ~1008 eps64 of each score; std relative to its size
    assert mean == pytest.approx(np.mean(scores), rel=1008 * EPS64)
    assert std == pytest.approx(np.std(scores), abs=1008 * EPS64 * mean)


def test_inception_score_extremes():
    n = 1008 * 2
    confident_distinct = np.full((n, 1008), -1e4)
    confident_distinct[np.arange(n), np.arange(n) % 1008] = 0.0
    # float64 means over n rows of KL = log 1008 (or 0): exp is off by ~n eps64 log 1008
    tol = n * EPS64 * np.log(1008)
    assert metrics.inception_score(confident_distinct, splits=1)[0] == pytest.approx(1008, rel=tol)
    assert metrics.inception_score(np.zeros((50, 1008)), splits=5)[0] == pytest.approx(1.0, rel=tol)


def test_mmd2_unbiased_matches_pairwise_loops():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(9, 5)) + 0.3
    k = lambda a, b: (np.dot(a, b) / 5 + 1) ** 3
    kxx = np.mean([k(x[i], x[j]) for i, j in itertools.permutations(range(7), 2)])
    kyy = np.mean([k(y[i], y[j]) for i, j in itertools.permutations(range(9), 2)])
    kxy = np.mean([k(a, b) for a in x for b in y])
    # float64 means of <= 72 kernel values: <= 72 eps64 of the summed magnitudes
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(kxx + kyy - 2 * kxy, rel=0,
                                                        abs=72 * EPS64 * (kxx + kyy + 2 * kxy))


def test_kid_subsets():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(60, 8)), rng.normal(size=(50, 8))
    mean, std = metrics.kernel_inception_distance(x, y, subset_size=20, num_subsets=5, seed=3)
    # replay the same subset draws and evaluate each MMD^2 from the kernel definition
    r = np.random.default_rng(3)
    vals, scale = [], 0.0
    for _ in range(5):
        a = x[r.choice(60, 20, replace=False)]
        b = y[r.choice(50, 20, replace=False)]
        kaa, kbb, kab = (a @ a.T / 8 + 1) ** 3, (b @ b.T / 8 + 1) ** 3, (a @ b.T / 8 + 1) ** 3
        off = ~np.eye(20, dtype=bool)
        vals.append(kaa[off].mean() + kbb[off].mean() - 2 * kab.mean())
        scale = max(scale, np.abs(kaa).mean() + np.abs(kbb).mean() + 2 * np.abs(kab).mean())
    # float64 means of <= 400 kernel values: <= 400 eps64 of the summed magnitudes
    assert mean == pytest.approx(np.mean(vals), rel=0, abs=400 * EPS64 * scale)
    assert std == pytest.approx(np.std(vals), rel=0, abs=400 * EPS64 * scale)
    shifted, _ = metrics.kernel_inception_distance(x, x + 1.0, subset_size=20, num_subsets=5)
    assert shifted > 10 * abs(mean)


def test_stats_formats_roundtrip(tmp_path):
    feats = np.random.default_rng(8).normal(size=(40, 6))
    ours = metrics.stats_from_features(feats)
    metrics.save_stats(tmp_path / 'ours.npz', ours)
    back = metrics.load_stats(tmp_path / 'ours.npz')
    assert back.num_images == 40 and back.resize == ours.resize
    # float64 save/load vs np.cov: 40-row sums, 40 eps64 of the largest variance
    cov = np.cov(feats.T)
    np.testing.assert_allclose(back.sigma, cov, rtol=0, atol=40 * EPS64 * cov.diagonal().max())

    np.savez(tmp_path / 'ptfid.npz', mu=feats.mean(0), sigma=np.cov(feats.T))
    pt = metrics.load_stats(tmp_path / 'ptfid.npz')
    assert pt.num_images is None and pt.resize == 'unknown'

    np.savez(tmp_path / 'score_sde.npz', pool_3=feats.astype(np.float32))
    sde = metrics.load_stats(tmp_path / 'score_sde.npz')
    assert sde.num_images == 40 and 'score_sde' in sde.resize
    # float32-rounded features perturb the stats: FID is second order in that, ~d (eps32 |x|)^2,
    # plus the float64 trace cancellation, d eps64 (tr S1 + tr S2)
    tol = 6 * ((EPS32 * np.abs(feats).max()) ** 2 + EPS64 * 2 * np.trace(pt.sigma))
    assert metrics.fid_from_stats(sde, pt) == pytest.approx(0.0, abs=tol)

    np.savez(tmp_path / 'other.npz', logits=feats)
    with pytest.raises(ValueError, match='not a FID statistics file'):
        metrics.load_stats(tmp_path / 'other.npz')


def test_mismatched_stats_dims():
    rng = np.random.default_rng(9)
    a = metrics.stats_from_features(rng.normal(size=(30, 8)))
    b = metrics.stats_from_features(rng.normal(size=(30, 4)))
    with pytest.raises(ValueError, match='dimensions do not match'):
        metrics.fid_from_stats(a, b)
    with pytest.raises(ValueError, match='dimensions do not match'):
        metrics.frechet_distance(a.mu, a.sigma, a.mu, a.sigma[:4, :4])


def test_features_rejects_bad_shape():
    with pytest.raises(ValueError, match='NHWC'):
        metrics.features({}, np.zeros((2, 3, 32, 32)))
