"""The denoiser view of a score model, shared by the EDM and DPM-Solver++ solvers.

For the marginal x_t = alpha(t) (x_0 + sigma(t) z) (:func:`pds.method.sde.scale_and_sigma`),
x-hat = x / alpha has noise level sigma, and Tweedie's formula gives the denoiser

    D(x-hat; sigma) = E[x_0 | x-hat] = x-hat + sigma^2 alpha s(alpha x-hat, t),

s the score in x (so alpha s is the score in x-hat). Both solvers step in x-hat between the
grid's noise levels and return to x = alpha x-hat; the last interval ends at the data
(t_next = 0), where sigma is taken as 0 and x-hat = D.
"""

from __future__ import annotations

import jax.numpy as jnp

from pds.method.sde import bcast, scale_and_sigma
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
