"""Scoring images with the FID Inception: weights and reference statistics from the config,
features per batch, and the metrics block shared by ``--mode=eval`` and ``--mode=fid``.

Config fields (``eval.*``):

* ``inception_weights``: the converted ``.npz`` (``evaluation.inception_weights``). Absent or
  corrupt: a :class:`ConfigError` naming the field, raised before any sampling.
* ``ref_stats``: reference statistics ``.npz`` read by ``evaluation.metrics.load_stats`` (ours:
  ``mu``/``sigma``; pytorch-fid's: ``mu``/``sigma``; score_sde's: raw ``pool_3``). Raw
  reference features, needed for KID, are taken from the key ``features`` (ours, optional) or
  ``pool_3`` (score_sde); without them KID is null with the reason. The statistics must be
  of the 2048-d pool_3 layer; other dimensions are a ConfigError.
* ``inception_batch_size``, ``is_splits``, ``kid_subset_size``, ``kid_num_subsets``.

Metrics (``evaluation.metrics``): FID = |mu - mu_r|^2 + tr S + tr S_r - 2 tr (S S_r)^{1/2}
between the Gaussian fits of the samples' and the reference pool_3 features (for fewer
samples than dimensions via an equivalent N x N problem, see ``fid_to_reference``); IS from the
1008 logits over min(is_splits, N) splits; KID = unbiased MMD^2 with the kernel
(x.y / 2048 + 1)^3 over ``kid_num_subsets`` subsets of min(kid_subset_size, N, N_r) rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from evaluation import metrics
from evaluation.inception import POOL_DIM, RESIZE_POLICY
from pds.runtime.errors import positive_int
from pds.storage import readers

FEATURE_KEYS = ('features', 'pool_3')  # raw reference features: ours, score_sde's


@dataclasses.dataclass
class Reference:
    """Reference statistics (and raw features when the file has them)."""

    path: str
    stats: metrics.FIDStats
    features: np.ndarray | None

    def summary(self) -> dict:
        return {'path': self.path, 'num_images': self.stats.num_images,
                'resize': self.stats.resize, 'has_features': self.features is not None}


def check_eval_fields(config) -> None:
    """The integer fields of the scoring block (ConfigError on the first bad one)."""
    for name in ('inception_batch_size', 'is_splits', 'kid_subset_size', 'kid_num_subsets'):
        positive_int(f'eval.{name}', config.eval[name])


def inception_params(config) -> tuple[dict, str]:
    """(params tree, params SHA-256) of ``eval.inception_weights``, the tree placed on this
    process's devices once for the run (``evaluation.metrics.replicate_local``); a ConfigError
    naming the field when the file is absent, unreadable or not the FID Inception's
    (``pds.storage.readers.read_inception_weights``)."""
    params, digest = readers.read_inception_weights(config.eval.inception_weights,
                                                    'eval.inception_weights')
    return metrics.replicate_local(params), digest


def load_reference(path: str) -> Reference | None:
    """The reference of ``eval.ref_stats`` (None for ''), checked to be finite 2048-d
    pool_3 statistics (``pds.storage.readers.read_fid_stats``)."""
    if not path:
        return None
    stats, feats = readers.read_fid_stats(path, 'eval.ref_stats', POOL_DIM)
    return Reference(path, stats, feats)


def rgb(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC with 1 or 3 channels -> 3 channels (grey repeated)."""
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def image_features(params: dict, images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """{'pool_3': (N, 2048), 'logits': (N, 1008)} float32 of uint8 NHWC images."""
    return metrics.features(params, rgb(images), batch_size=batch_size, resize=True,
                            with_logits=True)


def score(pool3: np.ndarray, logits: np.ndarray, ref: Reference | None, config) -> dict:
    """The metrics block of a report: FID, IS and KID of (N, 2048) / (N, 1008) features.

    ``fid``/``kid`` are null with a note in ``notes`` when they cannot be computed.
    """
    ev = config.eval
    n = len(pool3)
    notes: list[str] = []
    out: dict = {'num_images': n, 'resize': RESIZE_POLICY,
                 'reference': None if ref is None else ref.summary()}
    splits = min(int(ev.is_splits), n)
    is_mean, is_std = metrics.inception_score(logits, splits=splits)
    out['inception_score'] = {'mean': is_mean, 'std': is_std, 'splits': splits}
    out['fid'], out['kid'] = None, None
    if ref is None:
        notes.append("FID and KID skipped: eval.ref_stats is '' (no reference statistics)")
    else:
        if n < 2:
            notes.append('FID skipped: it needs at least 2 images')
        else:
            out['fid'] = fid_to_reference(pool3, ref.stats)
        if ref.stats.resize != RESIZE_POLICY:
            notes.append(f'the reference was made with resize {ref.stats.resize!r}, these '
                         f'features with {RESIZE_POLICY!r}: FID is not exactly comparable')
        out['kid'] = _kid(pool3, ref, config, notes)
    out['notes'] = notes
    return out


def fid_to_reference(feats: np.ndarray, ref: metrics.FIDStats) -> float:
    """FID between the Gaussian fit of (N, d) ``feats`` and ``ref`` (float64).

    For N > d this is ``metrics.fid_from_stats``. For N <= d the sample covariance
    S = X^T X / (N - 1) (X: centred features) has rank < N, and the nonzero eigenvalues of
    S S_r equal those of the N x N PSD matrix X S_r X^T / (N - 1), so
    tr (S S_r)^{1/2} = sum_i sqrt(lambda_i(X S_r X^T / (N - 1))) and tr S = |X|_F^2 / (N - 1):
    the same value for O(N d^2) work instead of d x d eigendecompositions.
    """
    x = np.asarray(feats, np.float64)
    n, d = x.shape
    if n > d:
        return metrics.fid_from_stats(metrics.stats_from_features(x), ref)
    if ref.dim != d:
        raise ValueError(f'FID statistics dimensions do not match: features of dim {d} vs '
                         f'reference mu {ref.mu.shape}')
    mu = x.mean(axis=0)
    xc = (x - mu) / np.sqrt(n - 1)
    inner = xc @ ref.sigma @ xc.T
    lam = np.linalg.eigvalsh((inner + inner.T) / 2)
    diff = mu - ref.mu
    val = (diff @ diff + np.sum(xc * xc) + np.trace(ref.sigma)
           - 2.0 * np.sum(np.sqrt(np.clip(lam, 0.0, None))))
    tol = 1e-9 * (np.sum(xc * xc) + np.trace(ref.sigma) + 1.0)
    return 0.0 if -tol < val < 0.0 else float(val)


def _kid(pool3: np.ndarray, ref: Reference, config, notes: list[str]) -> dict | None:
    if ref.features is None:
        notes.append(f'KID skipped: {ref.path} holds mu/sigma only, no raw features '
                     f"({' or '.join(repr(k) for k in FEATURE_KEYS)})")
        return None
    if min(len(pool3), len(ref.features)) < 2:
        notes.append('KID skipped: it needs at least 2 images in each set')
        return None
    size = min(int(config.eval.kid_subset_size), len(pool3), len(ref.features))
    num = int(config.eval.kid_num_subsets)
    mean, std = metrics.kernel_inception_distance(pool3, ref.features, subset_size=size,
                                                  num_subsets=num, seed=int(config.seed))
    return {'mean': mean, 'std': std, 'subset_size': size, 'num_subsets': num}


def stats_arrays(pool3: np.ndarray) -> dict[str, np.ndarray]:
    """Our statistics format (``metrics.load_stats`` reads it): mu, sigma, num_images, resize."""
    st = metrics.stats_from_features(pool3)
    return {'mu': st.mu, 'sigma': st.sigma, 'num_images': np.int64(st.num_images),
            'resize': np.array(st.resize)}
