"""Euler's method on the probability-flow ODE (``sampling.method='pf_euler'``).

    dx/dt = f(x, t) - 1/2 g(t)^2 s(x, t)          (Song et al. 2021, eq. 13)
    x_{i+1} = x_i + (t_next_i - t_i) [f(x_i, t_i) - 1/2 g(t_i)^2 s(x_i, t_i)]

over every interval of the time grid (the last one ends at t = 0); one score evaluation per
step, first order, deterministic after the prior draw. A preconditioner may not enter an ODE
drift (M M^T in the drift changes the flow's output distribution), so
``sampling.precondition`` must be 'none' (or go to a corrector after each step only:
``sampling.ode_corrector``, :mod:`pds.sampling.with_corrector`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from pds.method.sde import SDE, bcast
from pds.sampling.context import Context
from pds.sampling.declaration import ODE_CORRECTOR_REASON, SolverSpec
from pds.sampling.grid import Interval
from pds.sampling.solver import register_solver


@dataclasses.dataclass(frozen=True)
class ProbabilityFlowEuler:
    def init(self, ctx: Context, x):
        return x

    def step(self, ctx: Context, x, interval: Interval):
        t = ctx.times(interval.t)
        drift, diffusion = ctx.sde.sde(x, t)
        velocity = drift - 0.5 * bcast(diffusion**2, x) * ctx.score_fn(x, t)
        return x + (interval.t_next - interval.t) * velocity

    def step_nfe(self, interval: Interval):
        """One score evaluation per step (a corrector wrapper adds its own to this)."""
        return jnp.ones((), jnp.int32)

    def output(self, ctx: Context, x):
        return x

    def summary(self) -> dict[str, Any]:
        return {'method': 'pf_euler'}


@register_solver(SolverSpec(
    name='pf_euler', kind='ODE', preconditioner='corrector',
    preconditioner_reason=ODE_CORRECTOR_REASON, noise='none after the prior draw',
    moments='affine', grid='ladder',
    reference='Song et al. 2021 (arXiv 2011.13456), eq. 13, Euler steps'))
def from_config(config, sde: SDE) -> ProbabilityFlowEuler:
    return ProbabilityFlowEuler()
