"""The denoiser view of a score model, shared by the EDM and DPM-Solver++ solvers.

For the marginal x_t = alpha(t) (x_0 + sigma(t) z) (:func:`pds.method.sde.scale_and_sigma`),
x-hat = x / alpha has noise level sigma, and Tweedie's formula gives the denoiser

    D(x-hat; sigma) = E[x_0 | x-hat] = x-hat + sigma^2 alpha s(alpha x-hat, t),

s the score in x (so alpha s is the score in x-hat). Both solvers step in x-hat between the
grid's noise levels and return to x = alpha x-hat; the last interval ends at the data
(t_next = 0), where sigma is taken as 0 and x-hat = D. :func:`time_of_sigma` inverts
sigma(t) in the graph (EDM's churn raises sigma off the grid).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from pds.method.sde import SDE, VESDE, VPSDE, bcast, scale_and_sigma, subVPSDE
from pds.sampling.context import Context
from pds.sampling.grid import Interval

Array = jnp.ndarray


def levels(ctx: Context, interval: Interval) -> tuple[Array, Array, Array, Array, Array]:
    """(alpha, sigma) at t, (alpha, sigma) at t_next (sigma 0 and alpha 1 at the data), and
    whether t_next is the data; each (B,)."""
    t, t_next = ctx.times(interval.t), ctx.times(interval.t_next)
    a, s = scale_and_sigma(ctx.sde, t)
    a_n, s_n = scale_and_sigma(ctx.sde, t_next)
    last = t_next <= 0
    return a, s, jnp.where(last, 1.0, a_n), jnp.where(last, 0.0, s_n), last


def denoise(ctx: Context, x_hat: Array, alpha: Array, sigma: Array, t: Array) -> Array:
    """D(x-hat; sigma) at time t (each (B,)): one score evaluation."""
    score = ctx.score_fn(bcast(alpha, x_hat) * x_hat, t)
    return x_hat + bcast(sigma**2 * alpha, x_hat) * score


def time_of_sigma(sde: SDE, sigma: Array) -> Array:
    """The time t of noise level sigma = sigma(t) (:func:`pds.method.sde.scale_and_sigma`),
    traced and in closed form, in sigma's dtype (any sigma > 0; t exceeds T above sigma(T)):

    - VE: sigma = sigma_min (sigma_max / sigma_min)^t, t = log(sigma / sigma_min) /
      log(sigma_max / sigma_min);
    - VP: sigma^2 = 1 / alpha^2 - 1 = exp(I(t)) - 1 with I(t) = int_0^t beta = beta_0 t +
      (beta_1 - beta_0) t^2 / 2, so I = log(1 + sigma^2) and
      t = 2 I / (beta_0 + sqrt(beta_0^2 + 2 (beta_1 - beta_0) I)) (the quadratic's positive root);
    - subVP: sigma = (1 - alpha^2) / alpha, so 1 / alpha = sigma / 2 + sqrt(sigma^2 / 4 + 1)
      and I = -2 log alpha = 2 asinh(sigma / 2), then t as for VP.
    """
    sigma = jnp.asarray(sigma)
    if isinstance(sde, VESDE):
        return jnp.log(sigma / sde.sigma_min) / float(np.log(sde.sigma_max / sde.sigma_min))
    if isinstance(sde, subVPSDE):
        integral = 2.0 * jnp.arcsinh(0.5 * sigma)
    elif isinstance(sde, VPSDE):
        integral = jnp.log1p(sigma**2)
    else:
        raise TypeError(f'time_of_sigma: no closed form for {type(sde).__name__}')
    b0, slope = sde.beta_min, sde.beta_max - sde.beta_min
    return 2.0 * integral / (b0 + jnp.sqrt(b0**2 + 2.0 * slope * integral))
