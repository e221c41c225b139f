"""Closed forms for the exact targets (:mod:`pds.analytic.targets`), float64 on the host.

With the exact score and an exact solver, the ODE returns log pi(x(T)) + delta(T), where the
flow carries p_eps to p_T: delta(T) = log p_eps(x) - log p_T(x(T)). So per example

    log p_model(x) = log p_eps(x) + m(x),   m(x) = log pi(x(T)) - log p_T(x(T)),

log p_eps the marginal at eps (closed form: :meth:`log_density_host` of the Gaussian field,
per Fourier mode, and of the mixture) and m the prior's mismatch, closed form at the
trajectory's end point x(T). Over the data E[-m] = KL(p_T || pi) >= 0; for a Gaussian field
and a Gaussian pi (every prior here), both diagonal in the orthonormal Fourier basis,

    KL = 1/2 sum_modes [ v_T / v_pi - 1 - log(v_T / v_pi) + |M_T - M_pi|^2 / v_pi ],

v_T = a(T)^2 lambda + s(T)^2 and v_pi the per-mode variances, M the means' Fourier
coefficients (a constant image c has DC coefficient sqrt(H W) c). It is zero for the
'gaussian' prior on a field.
"""

from __future__ import annotations

import math

import numpy as np

from pds.analytic.gaussian_field import GaussianField
from pds.analytic.mixture import half_multiplicity
from pds.likelihood.priors import Prior
from pds.method.sde import SDE, VESDE, subVPSDE


def marginal_scales(sde: SDE, t: float) -> tuple[float, float]:
    """(a(t), s(t)) of the marginal x_t = a x_0 + s z, float64."""
    t = float(t)
    if isinstance(sde, VESDE):
        return 1.0, sde.sigma_min * (sde.sigma_max / sde.sigma_min) ** t
    lmc = -0.25 * t**2 * (sde.beta_max - sde.beta_min) - 0.5 * t * sde.beta_min
    a = math.exp(lmc)
    s = 1.0 - math.exp(2.0 * lmc)
    return a, (s if isinstance(sde, subVPSDE) else math.sqrt(s))


def marginal_log_density(target, sde: SDE, x: np.ndarray, t: float) -> np.ndarray:
    """log p_t(x) (N,) in nats per image for x (N, H, W, C) in data space."""
    a, s = marginal_scales(sde, t)
    return target.log_density_host(x, a, s)


def prior_mismatch(target, sde: SDE, prior: Prior, x_T: np.ndarray) -> np.ndarray:
    """m = log pi(x(T)) - log p_T(x(T)) (N,) in nats per image (module docstring)."""
    x_T = np.asarray(x_T, np.float64)
    return prior.logp(x_T, np) - marginal_log_density(target, sde, x_T, sde.T)


def prior_kl(field: GaussianField, sde: SDE, prior: Prior, h: int, w: int) -> float:
    """KL(p_T || pi) in nats per image for a Gaussian field (module docstring)."""
    a, s = marginal_scales(sde, sde.T)
    mult = half_multiplicity(w)[:, None]
    v_t = a**2 * field.half_spectrum(h, w) + s**2
    v_pi = np.broadcast_to(prior.half_variance(h, w), v_t.shape)
    ratio = v_t / v_pi
    mean_t = a * np.broadcast_to(np.asarray(field.mean, np.float64), (h, w, field.num_channels))
    mean_pi = 0.0 if prior.mean is None else np.asarray(prior.mean, np.float64)
    diff = np.fft.rfft2(mean_t - mean_pi, axes=(0, 1), norm='ortho')
    return float(0.5 * np.sum(mult * (ratio - 1.0 - np.log(ratio) + np.abs(diff) ** 2 / v_pi)))
