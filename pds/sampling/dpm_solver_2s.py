"""DPM-Solver++(2S) (Lu et al. 2022, arXiv 2211.01095, Algorithm 1 with r = 1/2): the
single-step, second-order, data-prediction solver of the probability-flow ODE
(``sampling.method='dpm_solver_2s'``).

In x-hat with noise level sigma (:mod:`pds.sampling.denoiser`), lambda = -log sigma and
h = log(sigma / sigma_n), one step from sigma to sigma_n first takes the first-order
(DDIM) step to the midpoint level sigma_s = sigma e^{-h/2} = sqrt(sigma sigma_n),

    x-hat_s = (sigma_s / sigma) x-hat + (1 - sigma_s / sigma) D(x-hat; sigma),

then the full step with the midpoint's denoiser,

    x-hat_n = (sigma_n / sigma) x-hat + (1 - sigma_n / sigma) D(x-hat_s; sigma_s),

(the general update weights D at sigma and sigma_s by 1 - 1/(2r) and 1/(2r); r = 1/2 leaves
the midpoint's alone). The midpoint is evaluated at its time t_s = t(sigma_s)
(:func:`pds.sampling.denoiser.time_of_sigma`) with alpha(t_s), and sigma_s is taken as
sigma(t_s). The last interval ends at the data (sigma_n = 0, h infinite): the first-order step,
x-hat_n = D(x-hat; sigma). Score evaluations: 2 per step, 1 in the last: 2N - 1. Second order;
deterministic after the prior draw.

Where PDS's M may go: not into the step (a preconditioner in an ODE drift changes the
distribution the flow produces), but a Langevin corrector may follow each step
(``sampling.ode_corrector``): the state is x alone and no evaluation is carried from one
step to the next, so a corrector that moves x leaves nothing stale.

The official code (github.com/LuChengTHU/dpm-solver, ``singlestep_dpm_solver_second_update``,
'dpmsolver++', solver_type 'dpmsolver', r1 = 0.5) takes the same update; its driver splits a
budget of NFE into a mix of orders, where here every step is 2S on the grid given.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from pds.method.sde import SDE, bcast, scale_and_sigma
from pds.sampling.context import Context
from pds.sampling.declaration import ODE_CORRECTOR_REASON, SolverSpec
from pds.sampling.denoiser import denoise, levels, time_of_sigma
from pds.sampling.grid import Interval
from pds.sampling.solver import register_solver


@dataclasses.dataclass(frozen=True)
class DPMSolver2S:
    """DPM-Solver++(2S) (module docstring); the state is x."""

    def init(self, ctx: Context, x):
        return x

    def step(self, ctx: Context, x, interval: Interval):
        a, s, a_n, s_n, last = levels(ctx, interval)
        x_hat = x / bcast(a, x)
        d = denoise(ctx, x_hat, a, s, ctx.times(interval.t))

        def second_order():
            t_s = time_of_sigma(ctx.sde, jnp.sqrt(s * s_n)).astype(s.dtype)
            a_s, s_s = scale_and_sigma(ctx.sde, t_s)
            x_s = bcast(s_s / s, x) * x_hat + bcast(1.0 - s_s / s, x) * d
            return denoise(ctx, x_s, a_s, s_s, t_s)

        d_mid = jax.lax.cond(jnp.all(last), lambda: d, second_order)
        ratio = s_n / s  # 0 at the data: x-hat_n = D(x-hat; sigma)
        x_hat_n = bcast(ratio, x) * x_hat + bcast(1.0 - ratio, x) * jnp.where(
            bcast(last, x), d, d_mid)
        return (bcast(a_n, x) * x_hat_n).astype(x.dtype)

    def step_nfe(self, interval: Interval):
        """2 per step, 1 into the data."""
        return jnp.where(interval.t_next <= 0, 1, 2).astype(jnp.int32)

    def output(self, ctx: Context, x):
        return x

    def summary(self) -> dict[str, Any]:
        return {'method': 'dpm_solver_2s', 'r': 0.5}


@register_solver(SolverSpec(
    name='dpm_solver_2s', kind='ODE', preconditioner='corrector',
    preconditioner_reason=ODE_CORRECTOR_REASON, noise='none after the prior draw',
    moments='affine', grid='logsnr', nfe=lambda sampling: (2, -1), nfe_text='2N - 1',
    reference='DPM-Solver++(2S), Lu et al. 2022 (arXiv 2211.01095), '
    'github.com/LuChengTHU/dpm-solver',
    deviations=('every step is 2S on the given grid (the official driver mixes orders to '
                'spend a budget of NFE)',)))
def from_config(config, sde: SDE) -> DPMSolver2S:
    return DPMSolver2S()
