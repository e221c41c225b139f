"""DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): a multistep, data-prediction solver of the
probability-flow ODE (``sampling.method='dpm_solver_2m'``), and its first-order member DDIM
(``sampling.method='ddim'``).

In x-hat with noise level sigma (:mod:`pds.sampling.denoiser`) and lambda = -log sigma, the
exact solution from sigma to sigma_n with the denoiser D held constant is

    x-hat_n = (sigma_n / sigma) x-hat + (1 - sigma_n / sigma) D,

and the 2M step replaces D by the linear extrapolation over lambda of this and the previous
step's denoiser: D' = (1 + 1 / (2 r)) D_i - 1 / (2 r) D_{i-1}, r = h_{i-1} / h_i,
h = lambda_n - lambda = log(sigma / sigma_n). The first step is first order (no D_{i-1}
yet; DPM-Solver++(1) = DDIM), and so is the last, which ends at the data (sigma_n = 0:
x-hat_n = D). One score evaluation per step; second order. DPM-Solver++(1) takes that
first-order step every time: DDIM (Song, Meng and Ermon 2021, eta = 0; one evaluation per
step, first order, the state x alone). The 2M state also carries D_{i-1} and h_{i-1} per
example. Use it with ``sampling.grid='logsnr'`` (log-SNR uniform, its paper's
choice) or any other grid. Deterministic after the prior draw; no preconditioner may enter it.

DPM-Solver++(3M) (``sampling.method='dpm_solver_3m'``) adds the second divided difference of
the last three denoisers over lambda (r0 = h_{i-1} / h, r1 = h_{i-2} / h):

    D1_0 = (D_i - D_{i-1}) / r0,   D1_1 = (D_{i-1} - D_{i-2}) / r1,
    D1 = D1_0 + r0 / (r0 + r1) (D1_0 - D1_1),   D2 = (D1_0 - D1_1) / (r0 + r1),
    x-hat_n = e^{-h} x-hat + (1 - e^{-h}) D_i + phi_2 D1 - 2 phi_3 D2,
    phi_1 = e^{-h} - 1,  phi_2 = phi_1 / h + 1,  phi_3 = phi_2 / h - 1/2,

from the exact step x-hat_n = e^{-h} x-hat + int_0^h e^{-(h-u)} D(lambda + u) du with D
expanded to second order: the integral is -phi_1 D + h phi_2 D' - h^2 phi_3 D'', and
D1 ~ h D', D2 ~ h^2 D'' / 2,

with the 2M step second and the first-order step last. A first-order first step (2M's) would
leave a local error O(h^2) that caps the global order at 2, so 3M's first step is the
trapezoid over lambda, e^{-h} x-hat + (1 - e^{-h}) (D(x-hat) + D(x-hat'_n)) / 2 with x-hat'_n
the first-order step (one more score evaluation): third order, N + 1 evaluations.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from pds.method.sde import SDE, bcast
from pds.sampling.context import Context
from pds.sampling.declaration import ODE_CORRECTOR_REASON, SolverSpec
from pds.sampling.denoiser import denoise, levels
from pds.sampling.grid import Interval
from pds.sampling.solver import register_solver


@dataclasses.dataclass(frozen=True)
class DPMSolverPP:
    """DPM-Solver++ of multistep order 1 (DDIM), 2 or 3 (module docstring)."""

    order: int = 2

    def init(self, ctx: Context, x):
        """x, and the last ``order - 1`` denoisers D and log-steps h (per example)."""
        if self.order == 1:
            return {'x': x}
        state = {'x': x, 'd_prev': jnp.zeros_like(x), 'h_prev': jnp.zeros(x.shape[:1], x.dtype)}
        if self.order == 3:
            state.update(d_prev2=state['d_prev'], h_prev2=state['h_prev'])
        return state

    def step(self, ctx: Context, state, interval: Interval):
        x = state['x']
        a, s, a_n, s_n, last = levels(ctx, interval)
        x_hat = x / bcast(a, x)
        d = denoise(ctx, x_hat, a, s, ctx.times(interval.t))
        ratio = s_n / s  # sigma_n / sigma = exp(-h); 0 at the data
        h = jnp.log(s / jnp.where(last, 1.0, s_n))  # (unused when last)
        i = interval.iteration
        first = i == 0
        d_ext = d  # DDIM (order 1): D itself
        if self.order > 1:
            r = state['h_prev'] / h
            k = jnp.where(first | last, 0.0, 1.0 / (2.0 * jnp.where(first, 1.0, r)))
            d_ext = d + bcast(k, x) * (d - state['d_prev'])  # (1 + k) D_i - k D_{i-1}
        x_hat_n = bcast(ratio, x) * x_hat + bcast(1.0 - ratio, x) * d_ext
        if self.order == 1:
            return {'x': (bcast(a_n, x) * x_hat_n).astype(x.dtype)}
        if self.order == 3:
            third = (i >= 2) & ~last
            safe = lambda v: jnp.where(third, v, 1.0)
            r0, r1 = safe(state['h_prev'] / h), safe(state['h_prev2'] / h)
            d1_0 = (d - state['d_prev']) / bcast(r0, x)
            d1_1 = (state['d_prev'] - state['d_prev2']) / bcast(r1, x)
            d1 = d1_0 + bcast(r0 / (r0 + r1), x) * (d1_0 - d1_1)
            d2 = (d1_0 - d1_1) / bcast(r0 + r1, x)
            hs = safe(h)
            phi2 = jnp.expm1(-hs) / hs + 1.0
            phi3 = phi2 / hs - 0.5
            x3 = (bcast(ratio, x) * x_hat + bcast(1.0 - ratio, x) * d
                  + bcast(phi2, x) * d1 - bcast(2.0 * phi3, x) * d2)
            x_hat_n = jnp.where(bcast(third, x), x3, x_hat_n)

            def heun():  # the first step, second order: the trapezoid over lambda
                t_n = ctx.times(interval.t_next)
                d_n = denoise(ctx, x_hat_n, a_n, s_n, t_n)
                return bcast(ratio, x) * x_hat + bcast(1.0 - ratio, x) * 0.5 * (d + d_n)

            x_hat_n = jax.lax.cond(first & (interval.t_next > 0), heun, lambda: x_hat_n)
        new = {'x': (bcast(a_n, x) * x_hat_n).astype(x.dtype), 'd_prev': d.astype(x.dtype),
               'h_prev': h.astype(x.dtype)}
        if self.order == 3:
            new.update(d_prev2=state['d_prev'], h_prev2=state['h_prev'])
        return new

    def step_nfe(self, interval: Interval):
        heun = (self.order == 3) & (interval.iteration == 0) & (interval.t_next > 0)
        return jnp.where(heun, 2, 1).astype(jnp.int32)

    def output(self, ctx: Context, state):
        return state['x']

    def summary(self) -> dict[str, Any]:
        return {'method': 'ddim' if self.order == 1 else f'dpm_solver_{self.order}m'}


DPM_SOLVER_CODE = 'github.com/LuChengTHU/dpm-solver'


def _spec(name: str, reference: str, **kw) -> SolverSpec:
    return SolverSpec(name=name, kind='ODE', preconditioner='corrector',
                      preconditioner_reason=ODE_CORRECTOR_REASON,
                      noise='none after the prior draw', moments='affine', grid='logsnr',
                      reference=reference, **kw)


@register_solver(_spec(
    'dpm_solver_2m', f'DPM-Solver++(2M), Lu et al. 2022 (arXiv 2211.01095), {DPM_SOLVER_CODE}',
    deviations=('the official code lowers the order of the last steps when it takes fewer '
                'than 10 (lower_order_final); here every step after the first is 2M',)))
def from_config(config, sde: SDE) -> DPMSolverPP:
    return DPMSolverPP(2)


@register_solver(_spec(
    'dpm_solver_3m', f'DPM-Solver++(3M), Lu et al. 2022 (arXiv 2211.01095), {DPM_SOLVER_CODE}',
    nfe=lambda sampling: (1, 1), nfe_text='N + 1',
    deviations=('the second divided difference enters with -2 phi_3 (official: -phi_3) and the '
                'first step is the trapezoid over lambda (official: first order): third order '
                'where the official update measures second',
                'the official code lowers the order of the last steps when it takes fewer '
                'than 10 (lower_order_final)')))
def from_config_3m(config, sde: SDE) -> DPMSolverPP:
    return DPMSolverPP(3)


@register_solver(_spec(
    'ddim', 'DDIM, Song, Meng and Ermon 2021 (arXiv 2010.02502), eta = 0 (DPM-Solver++(1))'))
def from_config_ddim(config, sde: SDE) -> DPMSolverPP:
    return DPMSolverPP(1)
