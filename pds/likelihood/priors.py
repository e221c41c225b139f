"""The prior pi whose log-density ends the likelihood: log p_eps(x) = log pi(x(T)) + delta(T).

- 'score_sde': score_sde's N(0, prior_std^2 I) (sigma_max^2 I for VE, I for VP and subVP),
  ``SDE.prior_logp``;
- 'mean': N(alpha(T) mu, prior_std^2 I), mu the data mean image (the sampler's
  ``sampling.prior='mean'``);
- 'gaussian': N(alpha(T) mu, U^H diag(alpha(T)^2 (lambda + sigma(T)^2)) U), lambda the data's
  per-mode variance in the orthonormal Fourier basis U (the sampler's
  ``sampling.prior='gaussian'``; the marginal at T itself when the data are Gaussian).

For the Gaussian prior, with R = U(x - alpha(T) mu) on the ``rfft2`` half spectrum and v the
prior's per-mode variance,

    log pi(x) = -1/2 sum_modes [ |R|^2 / v + log(2 pi v) ],

each half-spectrum column counted as often as it appears in the full spectrum
(:func:`pds.analytic.mixture.half_multiplicity`). ``logp`` runs in JAX (float32, in the
compiled program) or numpy (float64, on the host).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from pds.analytic.mixture import half_multiplicity
from pds.method.sde import SDE, scale_and_sigma

Array = jnp.ndarray


@dataclasses.dataclass(frozen=True)
class Prior:
    """pi of ``name``: isotropic std ``std`` about ``mean`` (H, W, C) (None: 0), or with
    per-mode ``variance`` (H, W // 2 + 1, C) (the Gaussian prior)."""

    name: str
    std: float
    mean: np.ndarray | None = None
    variance: np.ndarray | None = None

    def logp(self, x, xp=jnp):
        """log pi(x) (B,) in nats per image; x (B, H, W, C); ``xp`` jax.numpy or numpy."""
        r = x if self.mean is None else x - xp.asarray(self.mean, x.dtype)[None]
        if self.variance is None:
            d = int(np.prod(x.shape[1:]))
            s2 = self.std**2
            return (-0.5 * d * np.log(2 * np.pi * s2)
                    - xp.sum(r**2, axis=(1, 2, 3)) / (2 * s2))
        var = xp.asarray(self.variance, x.dtype)
        mult = xp.asarray(half_multiplicity(x.shape[2])[:, None], x.dtype)
        spec = xp.fft.rfft2(r, axes=(1, 2), norm='ortho')
        quad = xp.sum(mult * (xp.real(spec) ** 2 + xp.imag(spec) ** 2) / var, axis=(1, 2, 3))
        return -0.5 * (quad + xp.sum(mult * xp.log(2 * np.pi * var)))

    def half_variance(self, h: int, w: int) -> np.ndarray:
        """The per-mode variance on the half spectrum (H, W // 2 + 1, C) (isotropic: std^2)."""
        if self.variance is not None:
            return np.asarray(self.variance, np.float64)
        return np.full((h, w // 2 + 1, 1), self.std**2)

    def summary(self) -> dict:
        return {'prior': self.name, 'std': self.std}


def make_prior(name: str, sde: SDE, mean: np.ndarray | None, spectrum: np.ndarray | None
               ) -> Prior:
    """The prior ``name`` from the data moments of
    :func:`pds.experiment.assemble.data_moments_for_prior` (mean (H, W, C), half spectrum
    lambda (H, W // 2 + 1, C)), carried to T as the sampler carries them
    (:func:`pds.sampling.sampler.build_sampler`): mean alpha(T) mu, variance
    alpha(T)^2 (lambda + sigma(T)^2)."""
    alpha, sigma = (float(v) for v in scale_and_sigma(sde, jnp.float32(sde.T)))
    shift = None if mean is None else (alpha * np.asarray(mean, np.float64)).astype(np.float32)
    variance = None
    if spectrum is not None:
        variance = (alpha**2 * (np.asarray(spectrum, np.float64) + sigma**2)).astype(np.float32)
    return Prior(name, float(sde.prior_std), shift, variance)
