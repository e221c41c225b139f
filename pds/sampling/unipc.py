"""UniPC (Zhao et al. 2023) with B(h) = e^{-h} - 1 ("bh2"), data prediction, order 2:
a multistep predictor (UniP) whose step is corrected (UniC) with the denoiser at its own
result, that evaluation then serving the next step (``sampling.method='unipc'``).

In x-hat with noise level sigma (:mod:`pds.sampling.denoiser`), lambda = -log sigma, step
h = lambda_n - lambda, and m_j the denoisers already computed (m_0 at the current point,
m_-1 one step back, r = -h_{i-1} / h):

    base    = e^{-h} x-hat + (1 - e^{-h}) m_0                          (DDIM's step)
    UniP-2  : x-hat'_n = base - B(h) (1/2) D1,        D1 = (m_-1 - m_0) / r
    UniC-2  : x-hat_n  = base - B(h) (rho_1 D1 + rho_2 (m_n - m_0)),   m_n = D(x-hat'_n; sigma_n)

with (rho_1, rho_2) solving [[1, 1], [r, 1]] rho = (phi_1 / B, 2 phi_2 / B), where
phi_1 = (e^{-h} - 1) / (-h) - 1 and phi_2 = phi_1 / (-h) - 1/2: UniC makes the expansion of
the exact step x-hat_n = e^{-h} x-hat + int_0^h e^{-(h-u)} D(lambda + u) du match to one
more order (third). The first step has no m_-1: UniP-1 (DDIM) and UniC-1
(rho = phi_1 / B). The last interval ends at the data (sigma_n = 0): x-hat_n = m_0, the
denoiser the step before computed (UniPC's reuse; no new evaluation). m_n is evaluated at
the predicted x-hat'_n and kept for the next step while the state moves to the corrected
x-hat_n, as UniPC does. Score evaluations: 2 in the first step (m_0 at x_T, then m_n), 1
after, 0 in the last: N in all (N >= 2). Deterministic after the prior draw; no
preconditioner may enter it.

Reference:

- paper: Zhao et al. 2023, UniPC (arXiv:2302.04867).
- official code: https://github.com/wl-zhao/UniPC, ``UniPC.sample`` with ``variant='bh2'``,
  ``algorithm_type='data_prediction'``, ``method='multistep'``, ``order=2`` and its defaults
  (``lower_order_final=True``, ``denoise_to_zero=False``).
- the same grid: the official code run with ``steps = N - 1`` on our grid's N times
  T = t_0 > ... > t_{N-1} = eps as its time steps (``t_start = T``, ``t_end = eps``; its
  ``skip_type='logSNR'`` places them as our 'logsnr' grid, ``'time_uniform'`` as 'ladder').

Deviations of ours (``sampling.solver_variant='ours'``, the default) from that code;
``'reference'`` takes the official choice in each. Orders measured as e(M) / e(2M) at
M = 20, 40 (-> 2^p), float64, against the exact flow of the Gaussian problem of
tests/pds/sampling/test_reference_variants.py (sigma 5 to 0.1):

- end: the official code's last step (into sigma_min) is first order without corrector
  (``lower_order_final`` applies at every N: DDIM's step with m_0, no evaluation) and it
  returns x at sigma_min (``denoise_to_zero=False``); ours corrects that step too and ends
  with the denoiser m_n it evaluated at sigma_min. The reference variant's last interval
  (sigma_min to 0) keeps the state: N - 1 evaluations on N times. This makes the official
  code second order: ours 7.87, 7.91; reference 4.18, 4.06 (the first-order step shows where
  the denoiser still moves at sigma_min; on a flat end third-order error hides it).
- first corrector: the official UniC-1 weight is 1/2, ours phi_1 / B(h) (the order-1
  corrector's own condition); both leave that step's local error O(h^3). No effect on the
  order: the official update without lower_order_final measures 7.73, 7.90.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from pds.method.sde import SDE, bcast
from pds.sampling.context import Context
from pds.sampling.declaration import SolverSpec
from pds.sampling.denoiser import denoise, levels
from pds.sampling.grid import Interval
from pds.sampling.solver import register_solver
from pds.sampling.variant import reference_steps, solver_variant, variant_nfe


def corrector_weights(h, r, first):
    """(rho_1, rho_2) of UniC (module docstring), (B,) each; rho_1 = 0 in the first step."""
    hh = -h
    b_h = jnp.expm1(hh)
    phi1 = b_h / hh - 1.0
    phi2 = phi1 / hh - 0.5
    b1, b2 = phi1 / b_h, 2.0 * phi2 / b_h
    safe_r = jnp.where(first, 0.5, r)  # any value with 1 - r != 0 (unused in the first step)
    # [[1, 1], [r, 1]] (rho_1, rho_2) = (b1, b2)
    rho1 = (b1 - b2) / (1.0 - safe_r)
    rho2 = b1 - rho1
    return jnp.where(first, 0.0, rho1), jnp.where(first, b1, rho2), b_h


@dataclasses.dataclass(frozen=True)
class UniPC:
    """UniPC-bh2 of order 2 (module docstring). ``variant``: 'ours' or 'reference' (the
    official code's), which needs ``steps``, the N of the grid it runs on, for its
    uncorrected last step (from_config takes it from the config that gives the grid)."""

    variant: str = 'ours'
    steps: int = 0

    def init(self, ctx: Context, x):
        """x, the denoiser at the current point m_0, the one before m_-1 and h_{i-1}."""
        zeros = jnp.zeros_like(x)
        return {'x': x, 'm0': zeros, 'm_prev': zeros,
                'h_prev': jnp.zeros(x.shape[:1], x.dtype)}

    def step(self, ctx: Context, state, interval: Interval):
        if self.variant == 'reference':
            return self._reference_step(ctx, state, interval)
        x = state['x']
        a, s, a_n, s_n, last = levels(ctx, interval)
        t, t_n = ctx.times(interval.t), ctx.times(interval.t_next)
        x_hat = x / bcast(a, x)
        first = interval.iteration == 0
        m0 = jax.lax.cond(first, lambda: denoise(ctx, x_hat, a, s, t).astype(x.dtype),
                          lambda: state['m0'])
        h = jnp.log(s / jnp.where(last, 1.0, s_n))  # (unused when last)
        ratio = s_n / s  # e^{-h}
        base = bcast(ratio, x) * x_hat + bcast(1.0 - ratio, x) * m0
        r = -state['h_prev'] / jnp.where(last, 1.0, h)
        d1 = (state['m_prev'] - m0) / bcast(jnp.where(first, 1.0, r), x)
        rho1, rho2, b_h = corrector_weights(h, r, first)
        predicted = base - bcast(jnp.where(first, 0.0, 0.5 * b_h), x) * d1

        def corrected():
            m_n = denoise(ctx, predicted, a_n, s_n, t_n).astype(x.dtype)
            x_n = base - bcast(b_h, x) * (bcast(rho1, x) * d1 + bcast(rho2, x) * (m_n - m0))
            return x_n, m_n

        x_hat_n, m_n = jax.lax.cond(interval.t_next <= 0, lambda: (m0, m0), corrected)
        return {'x': (bcast(a_n, x) * x_hat_n).astype(x.dtype), 'm0': m_n, 'm_prev': m0,
                'h_prev': h.astype(x.dtype)}

    def _reference_step(self, ctx: Context, state, interval: Interval):
        """The official update: as ours but for the first corrector's weight 1/2 and the
        step into sigma_min (interval N - 2, the official code's last) DDIM's without a
        corrector; the last interval (sigma_min to 0) keeps the state."""
        first = interval.iteration == 0
        final = interval.iteration == self.steps - 2

        def advance():
            x = state['x']
            a, s, a_n, s_n, _ = levels(ctx, interval)
            t, t_n = ctx.times(interval.t), ctx.times(interval.t_next)
            x_hat = x / bcast(a, x)
            m0 = jax.lax.cond(first, lambda: denoise(ctx, x_hat, a, s, t).astype(x.dtype),
                              lambda: state['m0'])
            h = jnp.log(s / s_n)
            base = bcast(s_n / s, x) * x_hat - bcast(jnp.expm1(-h), x) * m0
            r = -state['h_prev'] / h
            d1 = (state['m_prev'] - m0) / bcast(jnp.where(first, 1.0, r), x)
            rho1, rho2, b_h = corrector_weights(h, r, first)
            rho2 = jnp.where(first, 0.5, rho2)

            def corrected():
                predicted = base - bcast(jnp.where(first, 0.0, 0.5 * b_h), x) * d1
                m_n = denoise(ctx, predicted, a_n, s_n, t_n).astype(x.dtype)
                return (base - bcast(b_h, x) * (bcast(rho1, x) * d1 + bcast(rho2, x) * (m_n - m0)),
                        m_n)

            x_hat_n, m_n = jax.lax.cond(final, lambda: (base, m0), corrected)
            return {'x': (bcast(a_n, x) * x_hat_n).astype(x.dtype), 'm0': m_n, 'm_prev': m0,
                    'h_prev': h.astype(x.dtype)}

        return jax.lax.cond(interval.t_next <= 0, lambda: state, advance)

    def step_nfe(self, interval: Interval):
        if self.variant == 'reference':
            first = (interval.iteration == 0).astype(jnp.int32)
            ends = (interval.t_next <= 0) | (interval.iteration == self.steps - 2)
            return jnp.where(ends, 0, 1 + first).astype(jnp.int32)
        first = (interval.iteration == 0).astype(jnp.int32)
        return jnp.where(interval.t_next <= 0, first, 1 + first).astype(jnp.int32)

    def output(self, ctx: Context, state):
        return state['x']

    def summary(self) -> dict[str, Any]:
        return {'method': 'unipc', 'variant': 'bh2', 'order': 2, 'solver_variant': self.variant}


@register_solver(SolverSpec(
    name='unipc', kind='ODE', preconditioner='none',
    preconditioner_reason='a preconditioner in an ODE drift changes the distribution the flow '
    'produces; nor may a corrector follow: each step reuses the denoiser evaluated at its '
    'predicted point as the next step\'s m_0, which a corrector moving x would leave stale',
    noise='none after the prior draw', moments='affine', grid='logsnr',
    nfe=variant_nfe((1, 0), (1, -1)), nfe_text="N; N - 1 with `solver_variant='reference'`",
    reference='UniPC-bh2, Zhao et al. 2023 (arXiv 2302.04867), github.com/wl-zhao/UniPC',
    deviations=('the official code ends with a first-order step without corrector at sigma_min '
                '(lower_order_final, at every N) and returns x there; ours corrects every step '
                'and ends with the denoiser the step before computed (third order, official '
                'second)',
                'the first corrector weight is phi_1 / B(h) (official: 0.5)')))
def from_config(config, sde: SDE) -> UniPC:
    if solver_variant(config) == 'ours':
        return UniPC()
    return UniPC('reference', reference_steps(config, 2, 'unipc'))
