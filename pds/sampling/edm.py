"""EDM's deterministic sampler (Karras et al. 2022, Algorithm 1): Heun's method on the
probability-flow ODE in noise level (``sampling.method='edm_heun'``).

In x-hat with noise level sigma (:mod:`pds.sampling.denoiser`) the ODE is
dx-hat / dsigma = (x-hat - D(x-hat; sigma)) / sigma, and one step from sigma to sigma_n is

    d  = (x-hat - D(x-hat; sigma)) / sigma,      x' = x-hat + (sigma_n - sigma) d,
    d' = (x' - D(x'; sigma_n)) / sigma_n,        x-hat_n = x-hat + (sigma_n - sigma) (d + d') / 2,

with the Euler step alone when sigma_n = 0 (the last interval, which ends at D): two score
evaluations per step, one in the last; second order. Use it with ``sampling.grid='karras'``
(EDM's rho-7 levels) or any other grid. Deterministic after the prior draw; no
preconditioner may enter it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from pds.method.sde import SDE, bcast
from pds.sampling.context import Context
from pds.sampling.denoiser import denoise, levels
from pds.sampling.grid import Interval
from pds.sampling.solver import register_solver, require_no_preconditioner


@dataclasses.dataclass(frozen=True)
class EDMHeun:
    deterministic = True  # no noise after the prior draw (pds.analytic.moments uses it)

    def init(self, ctx: Context, x):
        return x

    def step(self, ctx: Context, x, interval: Interval):
        a, s, a_n, s_n, _ = levels(ctx, interval)
        t, t_n = ctx.times(interval.t), ctx.times(interval.t_next)
        x_hat = x / bcast(a, x)
        d = (x_hat - denoise(ctx, x_hat, a, s, t)) / bcast(s, x)
        euler = x_hat + bcast(s_n - s, x) * d

        def heun():
            d_n = (euler - denoise(ctx, euler, a_n, s_n, t_n)) / bcast(s_n, x)
            return x_hat + bcast(s_n - s, x) * 0.5 * (d + d_n)

        x_hat_n = jax.lax.cond(interval.t_next <= 0, lambda: euler, heun)
        return bcast(a_n, x) * x_hat_n

    def step_nfe(self, interval: Interval):
        return jnp.where(interval.t_next <= 0, 1, 2).astype(jnp.int32)

    def output(self, ctx: Context, x):
        return x

    def summary(self) -> dict[str, Any]:
        return {'method': 'edm_heun'}


@register_solver('edm_heun')
def from_config(config, sde: SDE) -> EDMHeun:
    require_no_preconditioner(config, 'edm_heun')
    return EDMHeun()
