"""Exact Frechet distance between samples and a stationary Gaussian field.

In the orthonormal DFT basis U the field is N(0, diag(lambda)) after removing its mean. The
samples' covariance is projected onto the same (circulant) family: with X_n = U(x_n - mu),

    m(k) = mean_n X_n(k),   s(k) = sum_n |X_n(k) - m(k)|^2 / (N - 1),

and the Frechet distance between N(mu + U^H m, U^H diag(s) U) and N(mu, U^H diag(lambda) U) is

    FD = sum_k |m(k)|^2 + sum_k (sqrt(s(k)) - sqrt(lambda(k)))^2      (units: data^2).

It is computed in float64 on the host, streaming over chunks. Its estimation-noise floor is
the same statistic on the same number of exact samples of the field.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pds.analytic.gaussian_field import GaussianField


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

    def frechet_distance(self, spectrum: np.ndarray) -> float:
        if self.n < 2:
            raise ValueError(f'the Frechet distance needs at least 2 samples, got {self.n}')
        m = self.s1 / self.n
        var = np.maximum(self.s2 - self.n * np.abs(m) ** 2, 0.0) / (self.n - 1)
        return float(np.sum(np.abs(m) ** 2) + np.sum((np.sqrt(var) - np.sqrt(spectrum)) ** 2))


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
