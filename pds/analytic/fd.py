"""Exact Frechet distance between samples and a stationary Gaussian field.

In the orthonormal DFT basis U the field is N(0, diag(lambda)) after removing its mean. The
samples' covariance is projected onto the same (circulant) family: with X_n = U(x_n - mu),

    m(k) = mean_n X_n(k),   s(k) = sum_n |X_n(k) - m(k)|^2 / (N - 1),

and the Frechet distance between N(mu + U^H m, U^H diag(s) U) and N(mu, U^H diag(lambda) U) is

    FD = sum_k |m(k)|^2 + sum_k (sqrt(s(k)) - sqrt(lambda(k)))^2      (units: data^2).

It is computed in float64 on the host, streaming over chunks. This plug-in statistic is
biased at small N: sqrt(s(k)) underestimates sqrt(V(k)) (Jensen), so it rewards
under-dispersed samples (for exact samples its expectation is minimised by a variance ratio
near c_N^2 < 1, c_N = E sqrt(chi2_{N-1} / (N - 1))), and its mean term carries + V(k) / N.

:meth:`FourierMoments.unbiased_frechet_distance` removes both biases:

- mean term: |m(k)|^2 - s(k) / N is unbiased for |E X(k)|^2;
- variance term: modes are pooled over integer-radius rings r (the field's eigenvalue depends
  on |k| only), rho_r = sum_{k in r} s(k) / sum_{k in r} lambda(k), and with D_r the ring's
  real degrees of freedom (N - 1 per mode: a complex mode and its conjugate carry 2 (N - 1)
  between them, a self-conjugate mode N - 1), Lambda_r (rho_r - 2 sqrt(rho_r) / c_{D_r} + 1)
  is unbiased for Lambda_r (sqrt(rho) - 1)^2 when the ring's samples are Gaussian with one
  variance ratio (c_D = E sqrt(chi2_D / D)).

It estimates the population FD sum_k |m(k)|^2 + (sqrt(V(k)) - sqrt(lambda(k)))^2 up to the
spread of V / lambda within a ring, and can be negative by noise near 0.

The reference line is :func:`expected_floor`: the expected plug-in FD of N exact samples in
closed form, sum_k lambda(k) [1 / N + 2 - 2 c_{d(k)}] with d(k) = 2 (N - 1) for complex modes
and N - 1 for self-conjugate ones (about 1.25 sum lambda / N for large N); at N = 50,000 it is
what an FID-style 50k evaluation can resolve.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import digamma, gammaln

from pds.analytic.gaussian_field import GaussianField

FLOOR_SAMPLES = 50_000
BANDS = ('low', 'mid', 'high')


def sqrt_chi2_mean(d: np.ndarray) -> np.ndarray:
    """c_d = E sqrt(chi2_d / d) = sqrt(2 / d) Gamma((d + 1) / 2) / Gamma(d / 2)."""
    d = np.asarray(d, np.float64)
    return np.sqrt(2.0 / d) * np.exp(gammaln((d + 1) / 2) - gammaln(d / 2))


def radius(h: int, w: int) -> np.ndarray:
    """|k| (H, W) in cycles per image, native FFT layout."""
    ky = np.fft.fftfreq(h, 1.0 / h)[:, None]
    kx = np.fft.fftfreq(w, 1.0 / w)[None, :]
    return np.sqrt(kx**2 + ky**2)


def self_conjugate(h: int, w: int) -> np.ndarray:
    """(H, W) bool: modes k with k = -k (mod the grid): DC and the Nyquist lines' crossings."""
    ky, kx = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
    return ((-ky) % h == ky) & ((-kx) % w == kx)


def band_index(h: int, w: int) -> np.ndarray:
    """(H, W) int: -1 for DC, else 0 / 1 / 2 for |k| in the low / mid / high third of
    (0, max |k|]."""
    r = radius(h, w)
    band = np.minimum(np.ceil(3 * r / r.max()).astype(int) - 1, 2)
    band[r == 0] = -1
    return band


def band_variance_ratios(var: np.ndarray, spectrum: np.ndarray, n: int | None = None
                         ) -> dict[str, float]:
    """Geometric mean of var / lambda over the low, mid and high bands (DC excluded), all
    channels: < 1 means under-dispersed. var, spectrum: (H, W, C). With ``n``, var holds
    sample variances of n samples, and each mode's log ratio is corrected by the bias of a
    log sample variance, E log(chi2_d / d) = digamma(d / 2) - log(d / 2) (d = 2 (n - 1), or
    n - 1 on self-conjugate modes)."""
    h, w = spectrum.shape[:2]
    band = band_index(h, w)
    ratio = np.log(np.maximum(var, 1e-300) / spectrum)
    if n is not None:
        d = np.where(self_conjugate(h, w), n - 1, 2 * (n - 1))[:, :, None].astype(np.float64)
        ratio = ratio - (digamma(d / 2) - np.log(d / 2))
    return {name: float(np.exp(ratio[band == b].mean())) for b, name in enumerate(BANDS)}


def ring_layout(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The integer-radius rings r = round(|k|) of the (H W) flat modes: (order, starts,
    sizes) such that ``np.add.reduceat(a[order], starts)`` sums a over each ring."""
    ring = np.rint(radius(h, w)).astype(int).ravel()
    order = np.argsort(ring, kind='stable')
    sizes = np.bincount(ring)
    sizes = sizes[sizes > 0]
    return order, np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes


def unbiased_fd(mean_sq: np.ndarray, var: np.ndarray, n: int, spectrum: np.ndarray
                ) -> np.ndarray:
    """The ring-pooled, bias-corrected FD (module docstring) from per-mode |m(k)|^2 and
    s(k), each (..., H W, C) in flat native layout, of n samples; spectrum (H, W, C).
    Returns shape (...)."""
    h, w, c = spectrum.shape
    order, starts, sizes = ring_layout(h, w)
    lam = np.add.reduceat(spectrum.reshape(h * w, c)[order], starts, axis=0)  # (R, C)
    rho = np.add.reduceat(var[..., order, :], starts, axis=-2) / lam
    cd = sqrt_chi2_mean((n - 1) * sizes)[:, None]  # N - 1 real dof per mode
    var_term = np.sum(lam * (rho - 2.0 * np.sqrt(rho) / cd + 1.0), axis=(-2, -1))
    return np.sum(mean_sq - var / n, axis=(-2, -1)) + var_term


def expected_floor(spectrum: np.ndarray, n: int = FLOOR_SAMPLES) -> float:
    """The expected plug-in FD of n exact samples (module docstring), in closed form."""
    h, w = spectrum.shape[:2]
    d = np.where(self_conjugate(h, w), n - 1, 2 * (n - 1))[:, :, None]
    return float(np.sum(spectrum * (1.0 / n + 2.0 - 2.0 * sqrt_chi2_mean(d))))


@dataclasses.dataclass
class FourierMoments:
    """Running sums of X and |X|^2 over samples, X the orthonormal 2-D DFT of x - mu."""

    mean: np.ndarray  # (C,)
    n: int = 0
    s1: np.ndarray | None = None
    s2: np.ndarray | None = None

    def update(self, x: np.ndarray) -> None:
        spec = np.fft.fft2(np.asarray(x, np.float64) - self.mean, axes=(1, 2), norm='ortho')
        if self.s1 is None:
            self.s1 = np.zeros(spec.shape[1:], np.complex128)
            self.s2 = np.zeros(spec.shape[1:], np.float64)
        self.s1 += spec.sum(axis=0)
        self.s2 += (np.abs(spec) ** 2).sum(axis=0)
        self.n += len(x)

    def mean_and_variance(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-mode sample mean m(k) (complex) and variance s(k) (N - 1 denominator), each
        (H, W, C) in the native FFT layout."""
        if self.n < 2:
            raise ValueError(f'the Frechet distance needs at least 2 samples, got {self.n}')
        m = self.s1 / self.n
        return m, np.maximum(self.s2 - self.n * np.abs(m) ** 2, 0.0) / (self.n - 1)

    def frechet_distance(self, spectrum: np.ndarray) -> float:
        """The plug-in statistic (biased at small n; module docstring)."""
        m, var = self.mean_and_variance()
        return float(np.sum(np.abs(m) ** 2) + np.sum((np.sqrt(var) - np.sqrt(spectrum)) ** 2))

    def unbiased_frechet_distance(self, spectrum: np.ndarray) -> float:
        """Ring-pooled, bias-corrected estimate of the population FD (module docstring)."""
        m, var = self.mean_and_variance()
        h, w, c = spectrum.shape
        return float(unbiased_fd(np.abs(m.reshape(h * w, c)) ** 2, var.reshape(h * w, c),
                                 self.n, spectrum))

    def unbiased_fd_standard_error(self, spectrum: np.ndarray) -> float:
        """Standard error of :meth:`unbiased_frechet_distance`, by the delta method under
        Gaussian per-mode sampling (exact marginals for an affine sampler on the field).

        With m(k) ~ CN(mu_k, V_k / N) independent of s(k), a mode's mean term has variance
        4 |mu_k|^2 V_k / N + 2 V_k^2 / N^2 (a conjugate pair's terms counted as the pair),
        and a ring's variance sum S_r = sum_{k in r} s(k) has variance 2 sum V_k^2 / (N - 1).
        The ring's term, -S_r / N + Lambda_r f(S_r / Lambda_r), f(rho) = rho - 2 sqrt(rho) / c + 1,
        contributes g^2 Var(S_r) + (h^2 / 2) Var(S_r)^2 with g = 1 - 1 / N - 1 / (c sqrt(rho))
        and h = 1 / (2 c Lambda_r rho^(3/2)) (second order: g vanishes near rho = c^-2).
        Unknowns are replaced by unbiased estimates: |mu|^2 by |m|^2 - s / N (not clipped at
        0, which would bias the sum up) and V^2 by s^2 / (1 + 2 / d)."""
        m, var = self.mean_and_variance()
        h, w, c = spectrum.shape
        n = self.n
        d = np.where(self_conjugate(h, w), n - 1, 2 * (n - 1))[:, :, None]
        v2 = var**2 / (1.0 + 2.0 / d)
        mu2 = np.abs(m) ** 2 - var / n
        total = max(float(np.sum(4.0 * mu2 * var / n + 2.0 * v2 / n**2)),
                    float(np.sum(2.0 * v2 / n**2)))
        ring, starts, sizes = ring_layout(h, w)
        lam = np.add.reduceat(spectrum.reshape(h * w, c)[ring], starts, axis=0)
        rho = np.add.reduceat(var.reshape(h * w, c)[ring], starts, axis=0) / lam
        var_s = 2.0 * np.add.reduceat(v2.reshape(h * w, c)[ring], starts, axis=0) / (n - 1)
        cd = sqrt_chi2_mean((n - 1) * sizes)[:, None]
        rho = np.maximum(rho, 1e-12)
        g = 1.0 - 1.0 / n - 1.0 / (cd * np.sqrt(rho))
        hh = 1.0 / (2.0 * cd * lam * rho**1.5)
        total += float(np.sum(g**2 * var_s + 0.5 * hh**2 * var_s**2))
        return float(np.sqrt(total))

    def summary(self, spectrum: np.ndarray) -> dict:
        """Report fields: both FD estimates, the 50k floor, the band variance ratios and the
        squared norm of the mean error (bias-corrected)."""
        m, var = self.mean_and_variance()
        return {'frechet_distance': self.frechet_distance(spectrum),
                'frechet_distance_unbiased': self.unbiased_frechet_distance(spectrum),
                'frechet_floor_50k': expected_floor(spectrum),
                'band_variance_ratio': band_variance_ratios(var, spectrum, self.n),
                'mean_error_sq': float(np.sum(np.abs(m) ** 2 - var / self.n))}


def frechet_distance(samples: np.ndarray, field: GaussianField, chunk: int = 16) -> float:
    """FD between samples (N, H, W, C) in data space and the field."""
    h, w = samples.shape[1:3]
    acc = FourierMoments(mean=np.asarray(field.mean))
    for lo in range(0, len(samples), chunk):
        acc.update(samples[lo: lo + chunk])
    return acc.frechet_distance(field.spectrum(h, w))


def noise_floor(field: GaussianField, n: int, h: int, w: int, draws: int = 5,
                seed: int = 0, chunk: int = 16) -> tuple[float, float]:
    """Mean and standard deviation over ``draws`` of the FD of n exact samples.

    Streams: each draw's samples are generated and accumulated ``chunk`` at a time (the same
    random stream as one ``field.sample(rng, n, h, w)`` call), so host memory does not grow
    with n.
    """
    rng = np.random.default_rng(seed)
    spectrum = field.spectrum(h, w)
    vals = []
    for _ in range(draws):
        acc = FourierMoments(mean=np.asarray(field.mean))
        for lo in range(0, n, chunk):
            acc.update(field.sample(rng, min(chunk, n - lo), h, w))
        vals.append(acc.frechet_distance(spectrum))
    return float(np.mean(vals)), float(np.std(vals))
