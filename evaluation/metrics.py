"""FID, Inception Score and KID on FID-Inception features; reference statistics I/O.

All statistics are computed in float64 on the host (numpy / scipy).

* FID (Heusel et al. 2017) between N(mu1, S1) and N(mu2, S2):
      |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr (S1 S2)^{1/2}.
  S1 S2 is not symmetric, but it is similar to the PSD matrix M = S1^{1/2} S2 S1^{1/2}
  = (R1 R2)(R1 R2)^T, Ri = Si^{1/2}, so tr (S1 S2)^{1/2} = sum_i sqrt(lambda_i(M)) = the sum
  of the singular values of R1 R2. The Ri come from symmetric eigendecompositions with
  negative round-off eigenvalues clipped to 0, so the result is real and defined for singular
  covariances (fewer samples than 2048) without scipy's sqrtm or an eps offset.
* Inception Score (Salimans et al. 2016) from the 1008 logits: p(y|x) = softmax over all 1008
  logits (as TF-GAN's ``classifier_score_from_logits`` does with this head, and as the
  original OpenAI code did; the 8 unused classes get ~0 mass). Images are cut into ``splits``
  consecutive equal parts; per part IS = exp(mean_x KL(p(y|x) || p(y))), p(y) the part's
  mean; returns (mean, std) over parts.
* KID (Binkowski et al. 2018): unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, averaged over
  ``num_subsets`` random subsets of ``subset_size`` rows (without replacement within a
  subset) of each feature set; returns (mean, std) over subsets.

Reference statistics (``FIDStats``): ours are ``.npz`` files with ``mu`` (d,), ``sigma``
(d, d), ``num_images`` and ``resize`` (the resize policy, see ``inception.RESIZE_POLICY``).
``load_stats`` also reads pytorch-fid's ``.npz`` (``mu``, ``sigma``) and score_sde's
(``pool_3``: raw (N, 2048) TF-GAN features, from which mu/sigma are computed).
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from evaluation.inception import RESIZE_POLICY, make_apply_fn

# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------

_APPLY_CACHE: dict[tuple[bool, bool], object] = {}


def features(params: dict, images: np.ndarray, batch_size: int = 50, resize: bool = True,
             with_logits: bool = True) -> dict[str, np.ndarray]:
    """Run the jitted FID Inception over ``images`` (N, H, W, 3) in batches (``batched``).

    ``images`` are uint8 in [0, 255] or floats in [0, 1] (see ``inception.preprocess``).
    Returns ``{'pool_3': (N, 2048) float32, 'logits': (N, 1008) float32}`` (logits only if
    asked).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f'expected NHWC RGB images (N, H, W, 3), got shape {images.shape}')
    key = (resize, with_logits)
    if key not in _APPLY_CACHE:
        _APPLY_CACHE[key] = make_apply_fn(resize=resize, with_logits=with_logits)
    return batched(_APPLY_CACHE[key], params, images, batch_size)


def _local_mesh() -> Mesh:
    return Mesh(np.array(jax.local_devices()), ('batch',))


def replicate_local(tree):
    """``tree`` with a copy on each of this process's devices (the placement ``batched`` uses:
    placing parameters once per run saves a copy per ``batched`` call)."""
    return jax.device_put(tree, NamedSharding(_local_mesh(), PartitionSpec()))


def batched(apply, params, images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """``apply(params, batch) -> {name: (B, ...)}`` over ``images`` in batches of
    ``batch_size``, each batch split over this process's devices (``jax.local_devices()``) on
    its first axis, ``params`` replicated (no copy if ``replicate_local`` placed them). Every
    batch is zero-padded to ``batch_size`` rounded up to a multiple of the device count, so
    that only one shape is compiled; the padding rows are dropped from the concatenated
    outputs."""
    mesh = _local_mesh()
    size = -(-batch_size // mesh.size) * mesh.size
    split = NamedSharding(mesh, PartitionSpec('batch'))
    params = replicate_local(params)
    chunks: dict[str, list[np.ndarray]] = {}
    for lo in range(0, len(images), batch_size):
        batch = images[lo: lo + batch_size]
        m = len(batch)
        if m < size:
            pad = np.zeros((size - m, *batch.shape[1:]), batch.dtype)
            batch = np.concatenate([batch, pad])
        out = apply(params, jax.device_put(batch, split))
        for name, val in out.items():
            chunks.setdefault(name, []).append(np.asarray(val)[:m])
    if not chunks:
        raise ValueError('no images given')
    return {name: np.concatenate(vals) for name, vals in chunks.items()}


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class FIDStats:
    """Gaussian summary of pool_3 features: mu (d,), sigma (d, d)."""

    mu: np.ndarray
    sigma: np.ndarray
    num_images: int | None = None
    resize: str = 'unknown'

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


def stats_from_features(feats: np.ndarray, resize: str = RESIZE_POLICY) -> FIDStats:
    """mu = mean over rows, sigma = unbiased covariance (N - 1) of (N, d) features."""
    feats = np.asarray(feats, np.float64)
    if feats.ndim != 2 or len(feats) < 2:
        raise ValueError(f'need (N >= 2, d) features, got shape {feats.shape}')
    return FIDStats(mu=feats.mean(axis=0), sigma=np.cov(feats, rowvar=False),
                    num_images=len(feats), resize=resize)


def save_stats(path: str | os.PathLike, stats: FIDStats) -> None:
    """Write our format: mu, sigma (float64), num_images (-1 if unknown), resize."""
    np.savez(path, mu=stats.mu, sigma=stats.sigma,
             num_images=np.int64(-1 if stats.num_images is None else stats.num_images),
             resize=np.array(stats.resize))


def load_stats(path: str | os.PathLike) -> FIDStats:
    """Read ours / pytorch-fid's (``mu``, ``sigma``) or score_sde's (``pool_3``) stats files.

    Raises ValueError (one line, naming the file) on anything it cannot use: a missing,
    empty, truncated or corrupt file, object arrays, wrong keys, shapes or dtypes,
    non-finite values.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files
                      if k in ('mu', 'sigma', 'num_images', 'resize', 'pool_3')}
    except Exception as err:  # zipfile, zlib, numpy and the OS raise many types
        text = ' '.join(f'{type(err).__name__}: {err}'.split())[:200]
        raise ValueError(f'{path}: not a readable FID statistics .npz ({text})') from None
    return stats_from_arrays(arrays, str(path))


def stats_from_arrays(arrays: dict[str, np.ndarray], origin: str) -> FIDStats:
    """FIDStats of a stats file's arrays (``load_stats``' formats); ValueError naming
    ``origin`` when they are not (d,) / (d, d) finite numbers, or (N >= 2, d) features."""
    keys = set(arrays)
    try:
        if {'mu', 'sigma'} <= keys:
            n = int(arrays['num_images']) if 'num_images' in keys else -1
            stats = FIDStats(mu=np.asarray(arrays['mu'], np.float64),
                             sigma=np.asarray(arrays['sigma'], np.float64),
                             num_images=None if n < 0 else n,
                             resize=str(arrays['resize']) if 'resize' in keys else 'unknown')
        elif 'pool_3' in keys:
            stats = stats_from_features(arrays['pool_3'],
                                        resize='score_sde/TF-GAN (tf resize_bilinear)')
        else:
            raise ValueError(f'{origin}: not a FID statistics file (keys {sorted(keys)}; '
                             "expected 'mu' and 'sigma', or score_sde's 'pool_3')")
    except (TypeError, ValueError) as err:  # strings, arrays where a number belongs, ...
        if str(err).startswith(origin):
            raise
        raise ValueError(f'{origin}: not a FID statistics file ({err})') from None
    _check_stats(stats, origin)
    return stats


def _check_stats(stats: FIDStats, origin: str) -> None:
    d = stats.mu.shape
    if len(d) != 1 or stats.sigma.shape != (d[0], d[0]):
        raise ValueError(f'{origin}: mu {stats.mu.shape} and sigma {stats.sigma.shape} are '
                         'not (d,) and (d, d)')
    if not (np.all(np.isfinite(stats.mu)) and np.all(np.isfinite(stats.sigma))):
        raise ValueError(f'{origin}: mu or sigma holds NaN or infinite values')


def _check_same_dim(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                    sigma2: np.ndarray) -> None:
    shapes = [np.shape(a) for a in (mu1, sigma1, mu2, sigma2)]
    d1, d2 = shapes[0][0] if shapes[0] else 0, shapes[2][0] if shapes[2] else 0
    ok = (len(shapes[0]) == 1 and len(shapes[2]) == 1 and d1 == d2
          and shapes[1] == (d1, d1) and shapes[3] == (d2, d2))
    if not ok:
        raise ValueError(
            f'FID statistics dimensions do not match: mu {shapes[0]}, sigma {shapes[1]} vs '
            f'mu {shapes[2]}, sigma {shapes[3]} (both must come from the same feature layer, '
            'e.g. the 2048-d pool_3)')


# --------------------------------------------------------------------------------------------
# FID
# --------------------------------------------------------------------------------------------

def _psd_sqrt(mat: np.ndarray) -> np.ndarray:
    """Symmetric PSD square root via eigh, negative round-off eigenvalues clipped to 0."""
    w, v = np.linalg.eigh((mat + mat.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr (S1 S2)^{1/2} for symmetric PSD S1, S2, as the nuclear norm of S1^{1/2} S2^{1/2}.

    S1^{1/2} S2 S1^{1/2} = (R1 R2)(R1 R2)^T with Ri = Si^{1/2}, so its eigenvalues are the
    squared singular values of R1 R2 and tr (S1 S2)^{1/2} = sum_i sv_i(R1 R2). Taking singular
    values (rather than square roots of eigenvalues) keeps the null space of singular
    covariances at round-off level, not at its square root.
    """
    r1 = _psd_sqrt(np.asarray(sigma1, np.float64))
    r2 = _psd_sqrt(np.asarray(sigma2, np.float64))
    return float(np.sum(np.linalg.svd(r1 @ r2, compute_uv=False)))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr (S1 S2)^{1/2}, float64 (see module docstring)."""
    _check_same_dim(mu1, sigma1, mu2, sigma2)
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    diff = mu1 - mu2
    val = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2)
    # Round-off can leave a tiny negative value for (near-)identical statistics.
    tol = 1e-9 * (np.trace(s1) + np.trace(s2) + 1.0)
    return 0.0 if -tol < val < 0.0 else float(val)


def fid_from_stats(a: FIDStats, b: FIDStats) -> float:
    """FID between two ``FIDStats`` (ValueError if their dimensions differ)."""
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def fid_from_features(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """FID between the Gaussian fits of two (N, d) feature sets."""
    return fid_from_stats(stats_from_features(feats1), stats_from_features(feats2))


# --------------------------------------------------------------------------------------------
# Inception Score
# --------------------------------------------------------------------------------------------

def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """IS from (N, 1008) logits: (mean, std) over ``splits`` parts of exp(E_x KL(p(y|x)||p(y)))."""
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2 or len(logits) < splits:
        raise ValueError(f'need (N >= splits={splits}, classes) logits, got {logits.shape}')
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # log p(y|x)
    scores = []
    for part in np.array_split(log_p, splits):
        log_marginal = np.log(np.exp(part).mean(axis=0))  # log p(y)
        kl = np.sum(np.exp(part) * (part - log_marginal), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


# --------------------------------------------------------------------------------------------
# KID
# --------------------------------------------------------------------------------------------

def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for rows of x (n, d) and y (m, d) -> (n, m)."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2: mean_{i!=j} k(x_i,x_j) + mean_{i!=j} k(y_i,y_j) - 2 mean_{i,j} k(x_i,y_j)."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kernel_inception_distance(feats1: np.ndarray, feats2: np.ndarray, subset_size: int = 1000,
                              num_subsets: int = 100, seed: int = 0) -> tuple[float, float]:
    """KID: (mean, std) of ``mmd2_unbiased`` over random subsets (size min(subset_size, N))."""
    f1, f2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f'KID needs (N, d) features of equal d, got {f1.shape} and {f2.shape}')
    size = min(subset_size, len(f1), len(f2))
    if size < 2:
        raise ValueError('KID needs at least 2 samples in each set')
    rng = np.random.default_rng(seed)
    vals = [mmd2_unbiased(f1[rng.choice(len(f1), size, replace=False)],
                          f2[rng.choice(len(f2), size, replace=False)])
            for _ in range(num_subsets)]
    return float(np.mean(vals)), float(np.std(vals))
