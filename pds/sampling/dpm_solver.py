"""DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): a multistep, data-prediction solver of the
probability-flow ODE (``sampling.method='dpm_solver_2m'``).

In x-hat with noise level sigma (:mod:`pds.sampling.denoiser`) and lambda = -log sigma, the
exact solution from sigma to sigma_n with the denoiser D held constant is

    x-hat_n = (sigma_n / sigma) x-hat + (1 - sigma_n / sigma) D,

and the 2M step replaces D by the linear extrapolation over lambda of this and the previous
step's denoiser: D' = (1 + 1 / (2 r)) D_i - 1 / (2 r) D_{i-1}, r = h_{i-1} / h_i,
h = lambda_n - lambda = log(sigma / sigma_n). The first step is first order (no D_{i-1}
yet; DPM-Solver++(1) = DDIM), and so is the last, which ends at the data (sigma_n = 0:
x-hat_n = D). One score evaluation per step; second order. The state carries D_{i-1} and
h_{i-1} per example. Use it with ``sampling.grid='logsnr'`` (log-SNR uniform, its paper's
choice) or any other grid. Deterministic after the prior draw; no preconditioner may enter it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from pds.method.sde import SDE, bcast
from pds.sampling.context import Context
from pds.sampling.denoiser import denoise, levels
from pds.sampling.grid import Interval
from pds.sampling.solver import register_solver, require_no_preconditioner


@dataclasses.dataclass(frozen=True)
class DPMSolver2M:
    deterministic = True  # no noise after the prior draw (pds.analytic.moments uses it)

    def init(self, ctx: Context, x):
        b = x.shape[0]
        return {'x': x, 'd_prev': jnp.zeros_like(x), 'h_prev': jnp.zeros((b,), x.dtype)}

    def step(self, ctx: Context, state, interval: Interval):
        x = state['x']
        a, s, a_n, s_n, last = levels(ctx, interval)
        x_hat = x / bcast(a, x)
        d = denoise(ctx, x_hat, a, s, ctx.times(interval.t))
        ratio = s_n / s  # sigma_n / sigma = exp(-h); 0 at the data
        h = jnp.log(s / jnp.where(last, 1.0, s_n))  # (unused when last)
        first = interval.iteration == 0
        r = state['h_prev'] / h
        k = jnp.where(first | last, 0.0, 1.0 / (2.0 * jnp.where(first, 1.0, r)))
        d_ext = d + bcast(k, x) * (d - state['d_prev'])  # (1 + k) D_i - k D_{i-1}
        x_hat_n = bcast(ratio, x) * x_hat + bcast(1.0 - ratio, x) * d_ext
        return {'x': (bcast(a_n, x) * x_hat_n).astype(x.dtype), 'd_prev': d.astype(x.dtype),
                'h_prev': h.astype(x.dtype)}

    def output(self, ctx: Context, state):
        return state['x']

    def summary(self) -> dict[str, Any]:
        return {'method': 'dpm_solver_2m'}


@register_solver('dpm_solver_2m')
def from_config(config, sde: SDE) -> DPMSolver2M:
    require_no_preconditioner(config, 'dpm_solver_2m')
    return DPMSolver2M()
