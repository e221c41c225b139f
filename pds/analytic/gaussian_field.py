"""Stationary Gaussian fields: image distributions whose perturbed score is exact.

Per channel c the field has mean mu_c and a covariance that is diagonal in the orthonormal
2-D DFT basis U (U^H U = I), with eigenvalue

    lambda_c(k) = v_c w(k) / mean_k' w(k'),   w(k) = (1 + |k|^2 / k0^2)^(-beta),

|k| the integer frequency radius in cycles per image. v_c is then the per-pixel variance.
Diffusing x_0 ~ N(mu, Sigma) with a linear SDE whose marginal is x_t = a(t) x_0 + s(t) z
gives p_t = N(a mu, a^2 Sigma + s^2 I), whose score is exact and diagonal in U:

    grad log p_t(x) = -F^-1[ F[x - a mu] / (a^2 lambda + s^2) ]

(any DFT normalisation cancels). One rfft2 / irfft2 pair per evaluation, at any resolution.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from pds.method.sde import SDE

Array = jnp.ndarray


@dataclasses.dataclass(frozen=True)
class GaussianField:
    mean: tuple[float, ...] = (0.5, 0.45, 0.4)
    variance: tuple[float, ...] = (0.04, 0.04, 0.04)
    k0: float = 1.0
    beta: float = 1.0
    # every Fourier mode an independent Gaussian (pds.analytic.targets.ExactTarget)
    gaussian_modes: ClassVar[bool] = True

    @property
    def num_channels(self) -> int:
        return len(self.mean)

    def target_moments(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """(per-channel mean mu (C,), per-mode variance lambda (H, W, C)), float64, exact."""
        return np.asarray(self.mean, np.float64), self.spectrum(h, w)

    def prior_mean(self, h: int, w: int) -> np.ndarray:
        """The mean image (H, W, C), float32: mu_c at every pixel."""
        return np.broadcast_to(np.asarray(self.mean, np.float32),
                               (h, w, self.num_channels)).copy()

    def spectrum(self, h: int, w: int) -> np.ndarray:
        """Eigenvalues lambda (H, W, C), float64, native FFT layout (DC at [0, 0])."""
        ky = np.fft.fftfreq(h, 1.0 / h)[:, None]
        kx = np.fft.fftfreq(w, 1.0 / w)[None, :]
        wk = (1.0 + (kx**2 + ky**2) / self.k0**2) ** (-self.beta)
        wk = wk / wk.mean()
        return wk[:, :, None] * np.asarray(self.variance, np.float64)[None, None, :]

    def half_spectrum(self, h: int, w: int) -> np.ndarray:
        """lambda on the rfft2 half spectrum (H, W // 2 + 1, C), float64."""
        return self.spectrum(h, w)[:, : w // 2 + 1]

    def variables(self, h: int, w: int) -> dict[str, Array]:
        """Arrays the score needs: mean (C,) and the half spectrum (H, W // 2 + 1, C)."""
        return {'mean': jnp.asarray(self.mean, jnp.float32),
                'spectrum': jnp.asarray(self.half_spectrum(h, w), jnp.float32)}

    def sample(self, rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
        """n exact samples (n, H, W, C), float64: mu + U^H sqrt(lambda) U z."""
        root = np.sqrt(self.spectrum(h, w))
        out = np.empty((n, h, w, self.num_channels))
        for lo in range(0, n, 16):
            z = rng.standard_normal((min(16, n - lo), h, w, self.num_channels))
            spec = np.fft.fft2(z, axes=(1, 2), norm='ortho') * root
            out[lo: lo + len(z)] = np.real(np.fft.ifft2(spec, axes=(1, 2), norm='ortho'))
        return out + np.asarray(self.mean)

    def log_density_host(self, x: np.ndarray, a: float, s: float) -> np.ndarray:
        """log p_t(x) (N,) of the diffused field N(a mu, a^2 Sigma + s^2 I) at x (N, H, W, C),
        float64 on the host: with R = U(x - a mu) (orthonormal 2-D DFT, the full spectrum)
        and v = a^2 lambda + s^2 per mode and channel,

            log p_t(x) = -1/2 sum_modes [ |R|^2 / v + log(2 pi v) ]."""
        x = np.asarray(x, np.float64)
        h, w = x.shape[1:3]
        var = a**2 * self.spectrum(h, w) + s**2
        r = np.fft.fft2(x - a * np.asarray(self.mean), axes=(1, 2), norm='ortho')
        quad = np.sum(np.abs(r) ** 2 / var, axis=(1, 2, 3))
        return -0.5 * (quad + np.sum(np.log(2.0 * np.pi * var)))


def field_from_config(config) -> GaussianField:
    """The field of ``config.model`` in data space (mapped to [-1, 1] when data.centered)."""
    m = config.model
    mean = np.asarray(m.field_mean, np.float64)
    var = np.asarray(m.field_variance, np.float64)
    if var.size == 1:
        var = np.full(mean.shape, float(var))
    if config.data.centered:
        mean, var = 2.0 * mean - 1.0, 4.0 * var
    return GaussianField(tuple(mean.tolist()), tuple(var.tolist()), float(m.field_k0),
                         float(m.field_beta))


def exact_score_fn(sde: SDE, variables: dict[str, Array]) -> Callable[[Array, Array], Array]:
    """score(x, t) of the diffused field: x (B, H, W, C), t (B,) -> (B, H, W, C)."""

    def score(x: Array, t: Array) -> Array:
        h, w = x.shape[1], x.shape[2]
        a, s = sde.marginal_prob(jnp.ones((x.shape[0], 1, 1, 1), x.dtype), t)
        s2 = (s**2).reshape(-1, 1, 1, 1)
        spec = jnp.fft.rfft2(x - a * variables['mean'], axes=(1, 2))
        spec = spec / (a**2 * variables['spectrum'] + s2)
        return -jnp.fft.irfft2(spec, s=(h, w), axes=(1, 2)).astype(x.dtype)

    return score


def capped_score_builder(kappa: float):
    """A score builder (sde, variables) -> score: the field's exact score with its norm
    capped per example at kappa sqrt(d) / std(t), d = H W C (``model.score_norm_cap``):

        s_capped(x, t) = s(x, t) min(1, kappa sqrt(d) / (std(t) ||s(x, t)||)).

    A trained network's score norm does not grow with its input's excess noise (it measures
    kappa ~ 0.945 on the 16x16 field, benchmarks/README.md); this puts that one property on
    an otherwise exact score, to tell a sampler's effects from a network's."""

    def builder(sde: SDE, variables: dict[str, Array]) -> Callable[[Array, Array], Array]:
        exact = exact_score_fn(sde, variables)

        def score(x: Array, t: Array) -> Array:
            s = exact(x, t)
            _, std = sde.marginal_prob(x, t)
            cap = kappa * math.sqrt(math.prod(x.shape[1:])) / std
            norm = jnp.sqrt(jnp.sum(jnp.square(s), axis=(1, 2, 3)))
            return s * jnp.minimum(1.0, cap / norm).reshape(-1, 1, 1, 1).astype(s.dtype)

        return score

    return builder
