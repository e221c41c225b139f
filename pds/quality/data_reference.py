"""What samples of a network trained on real data are measured against, when the data
distribution is known only through its images (``data.dataset`` not an exact target).

- reference sets A and B: two disjoint sets of held-out images. For the photographs
  (:mod:`pds.data.photos`) A is split 'eval' and B part 'eval_b', both from held-out cells
  that touch no training patch; for other datasets, the first and second n images of the
  'eval' split. A sampler's samples are compared with A; A against B is the **data floor**
  of each metric at that sample size.
- data moments: the per-channel mean and the per-mode variance lambda(k) of the orthonormal
  2-D DFT of training images (:class:`DataMoments`), the target of the Fourier-mode Frechet
  distance (:class:`pds.analytic.fd.FourierMoments`).
- the best Gaussian model of the data: the Gaussian with the training images' mean image mu
  and their circulant (stationary) covariance, i.e. the per-frequency cross-channel
  covariance Sigma(k) = Cov[X(k)] of their orthonormal DFT X, sampled exactly:
  x = mu + sqrt(2) Re(F^-1 L(k) w(k)), with L L^H = Sigma and w circular complex white noise
  (E w w^H = I, E w w^T = 0), so that Cov x = Re(F^H Sigma F) (real images have
  Sigma(-k) = conj Sigma(k), which makes F^H Sigma F real). A network that beats it on SWD
  learned more than second-order statistics.
- memorisation: the nearest-neighbour distance (root mean square over pixels) of each sample
  to the training images and their mirror images, beside the same distance for held-out images.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pds.analytic.fd import FourierMoments


def reference_sets(config, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, B): n held-out images each, float32 (n, H, W, C) in [0, 1] (module docstring)."""
    from pds.data.pipelines import dataset_name, load_images

    if dataset_name(config) == 'photos':
        from pds.data.photos import PhotoSource

        a = PhotoSource(config, config.seed, 'eval').read(np.arange(n))
        b = PhotoSource(config, config.seed, 'eval_b').read(np.arange(n))
        return a, b
    both = load_images(config, 2 * n, 'eval')
    if len(both) < 2 * n:
        from pds.runtime.errors import ConfigError

        raise ConfigError('bench.num_samples', n, f'at most half the eval split '
                          f'({len(both) // 2} images) for two disjoint reference sets')
    return both[:n], both[n:]


@dataclasses.dataclass(frozen=True)
class DataMoments:
    """Moments of the training images (float64): ``mean`` (H, W, C) the mean image and
    ``cross`` (H, W, C, C) Sigma(k) = Cov[X(k)], the per-frequency cross-channel covariance
    of the orthonormal DFT X of the images (N - 1 denominator). Its diagonal is the
    per-mode variance lambda(k), the Fourier FD's target (:attr:`spectrum`)."""

    mean: np.ndarray
    cross: np.ndarray
    num_images: int

    @property
    def spectrum(self) -> np.ndarray:
        """lambda(k), (H, W, C)."""
        return np.real(np.einsum('hwcc->hwc', self.cross))


def data_moments(images: np.ndarray, chunk: int = 1024) -> DataMoments:
    """:class:`DataMoments` of ``images`` (N, H, W, C), streaming in chunks."""
    x = np.asarray(images, np.float64)
    n, h, w, c = x.shape
    mean = x.mean(axis=0)
    cross = np.zeros((h, w, c, c), complex)
    for s in range(0, n, chunk):
        spec = np.fft.fft2(x[s:s + chunk] - mean, axes=(1, 2), norm='ortho')
        cross += np.einsum('nhwc,nhwd->hwcd', spec, spec.conj())
    return DataMoments(mean, cross / (n - 1), n)


def fourier_fd(samples: np.ndarray, moments: DataMoments) -> dict:
    """The unbiased Fourier-mode FD of ``samples`` to the data moments, its standard error
    and the plug-in statistic (:class:`pds.analytic.fd.FourierMoments`), in data units^2."""
    fm = FourierMoments(moments.mean)
    fm.update(np.asarray(samples, np.float64))
    summary = fm.summary(moments.spectrum)
    return {'fd': summary['frechet_distance_unbiased'],
            'fd_se': fm.unbiased_fd_standard_error(moments.spectrum),
            'fd_plugin': summary['frechet_distance']}


def gaussian_model_samples(moments: DataMoments, n: int, seed: int) -> np.ndarray:
    """n exact samples (n, H, W, C) of the stationary Gaussian model (module docstring)."""
    h, w, c, _ = moments.cross.shape
    vals, vecs = np.linalg.eigh(moments.cross)  # Sigma = V diag(vals) V^H, PSD up to rounding
    factor = vecs * np.sqrt(np.clip(vals, 0.0, None))[..., None, :]
    rng = np.random.default_rng([seed, 0x6A55])
    noise = (rng.standard_normal((n, h, w, c)) + 1j * rng.standard_normal((n, h, w, c)))
    coloured = np.einsum('hwcd,nhwd->nhwc', factor, noise / np.sqrt(2.0))
    x = np.sqrt(2.0) * np.fft.ifft2(coloured, axes=(1, 2), norm='ortho').real
    return (x + moments.mean).astype(np.float32)


def nearest_distances(queries: np.ndarray, bank: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Per query, the root-mean-square pixel distance to its nearest image of ``bank``."""
    q = np.asarray(queries, np.float64).reshape(len(queries), -1)
    b = np.asarray(bank, np.float64).reshape(len(bank), -1)
    bb = np.einsum('ij,ij->i', b, b)
    out = np.empty(len(q))
    for s in range(0, len(q), chunk):
        qs = q[s:s + chunk]
        d2 = np.einsum('ij,ij->i', qs, qs)[:, None] - 2.0 * qs @ b.T + bb[None]
        out[s:s + chunk] = np.sqrt(np.clip(d2.min(axis=1), 0.0, None) / q.shape[1])
    return out


def memorisation(samples: np.ndarray, held_out: np.ndarray, training: np.ndarray,
                 min_std: float = 0.02) -> dict:
    """Nearest-neighbour distances to the training images and their left-right mirrors:
    quantiles for the samples and for held-out images, and the fraction of samples nearer
    than the held-out images' 1st percentile (about 0.01 when samples are no closer to the
    training set than new data; near 1 for copies). Only images with a pixel standard
    deviation of at least ``min_std`` count: a flat patch (a black sky) is at distance 0 from
    a flat training patch without being a copy of anything."""
    def textured(x):
        x = np.asarray(x)
        return x[x.reshape(len(x), -1).std(axis=1) >= min_std]

    s, h = textured(samples), textured(held_out)
    bank = np.concatenate([training, training[:, :, ::-1]])
    ds, dh = nearest_distances(s, bank), nearest_distances(h, bank)
    q = (0.01, 0.05, 0.5)
    return {'training_images': len(bank), 'min_std': min_std,
            'textured_samples': len(s), 'textured_held_out': len(h),
            'samples': {f'q{int(100 * p)}': float(np.quantile(ds, p)) for p in q},
            'held_out': {f'q{int(100 * p)}': float(np.quantile(dh, p)) for p in q},
            'samples_below_held_out_q1': float(np.mean(ds < np.quantile(dh, 0.01)))}
