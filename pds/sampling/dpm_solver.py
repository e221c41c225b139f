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

Reference:

- paper: Lu et al. 2022, DPM-Solver++ (arXiv:2211.01095), building on DPM-Solver
  (arXiv:2206.00927); DDIM: Song, Meng and Ermon 2021 (arXiv:2010.02502).
- official code: https://github.com/LuChengTHU/dpm-solver, ``DPM_Solver.sample`` with
  ``algorithm_type='dpmsolver++'``, ``method='multistep'``, ``solver_type='dpmsolver'`` and its
  defaults (``lower_order_final=True``, ``denoise_to_zero=False``).
- the same grid: the official code run with ``steps = N - 1`` on our grid's N times
  T = t_0 > ... > t_{N-1} = eps as its time steps (``t_start = T``, ``t_end = eps``; its
  ``skip_type='logSNR'`` places them as our 'logsnr' grid, ``'time_uniform'`` as 'ladder').

Deviations of ours (``sampling.solver_variant='ours'``, the default) from that code;
``'reference'`` takes the official choice in each. Orders measured as e(M) / e(2M) at
M = 20, 40 (-> 2^p), float64, against the exact flow of the Gaussian problem of
tests/pds/sampling/test_reference_variants.py (sigma 5 to 0.1):

- end: ours ends with the denoiser at sigma_min (the last interval, sigma_min to 0:
  x-hat = D, one more evaluation: N in all for 2M on N times); the official code returns x
  at sigma_min (``denoise_to_zero=False``), so the reference variant's last interval keeps
  the state and evaluates nothing: N - 1 evaluations for 2M and 3M. Order unchanged: 2M
  ours 3.85, 3.95; reference 3.85, 3.97.
- final steps: below 10 steps the official code lowers the order of its last steps
  (``lower_order_final``: step j of M takes order min(order, M + 1 - j), first order into
  sigma_min); ours keeps the full order up to sigma_min. No effect on the order (off from
  10 steps).
- 3M's second difference: the official update has - phi_3 D2, half the Taylor term
  - 2 phi_3 D2 derived above; and its first step is first order where ours is the trapezoid
  (one more evaluation). Either alone makes 3M second order (official - phi_3 D2 with our
  trapezoid: 4.00, 3.95; our - 2 phi_3 D2 with a first-order first step: 4.43, 4.23);
  ours 10.6, 9.2 (third order), reference 4.9, 4.4 (second order).
- DDIM: none (it agrees with the official DDIM to float64 rounding); it ignores the field.
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
from pds.sampling.variant import reference_steps, solver_variant, variant_nfe


@dataclasses.dataclass(frozen=True)
class DPMSolverPP:
    """DPM-Solver++ of multistep order 1 (DDIM), 2 or 3 (module docstring). ``variant``:
    'ours' or 'reference' (the official code's update; orders 2 and 3 only), which needs
    ``steps``, the N of the grid it runs on, for its lower-order final steps (from_config
    takes it from the config that gives the grid)."""

    order: int = 2
    variant: str = 'ours'
    steps: int = 0

    def init(self, ctx: Context, x):
        """x, and the last ``order - 1`` denoisers D and log-steps h (per example)."""
        if self.order == 1:
            return {'x': x}
        state = {'x': x, 'd_prev': jnp.zeros_like(x), 'h_prev': jnp.zeros(x.shape[:1], x.dtype)}
        if self.order == 3:
            state.update(d_prev2=state['d_prev'], h_prev2=state['h_prev'])
        return state

    def step(self, ctx: Context, state, interval: Interval):
        if self.variant == 'reference':
            return self._reference_step(ctx, state, interval)
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

    def reference_order(self, i):
        """The official code's order at interval i < N - 1 (its step i + 1 of M = N - 1):
        min(order, i + 1) while warming up, and below 10 steps (``lower_order_final``) at
        most M - i."""
        order = jnp.minimum(self.order, i + 1)
        m = self.steps - 1
        return jnp.minimum(order, m - i) if m < 10 else order

    def _reference_step(self, ctx: Context, state, interval: Interval):
        """The official multistep update (module docstring) in x-hat: with
        phi_1 = e^{-h} - 1, x-hat_n = e^{-h} x-hat - phi_1 D_i + (order 2) - phi_1 D1_0 / 2,
        or (order 3) + phi_2 D1 - phi_3 D2; the last interval (sigma_min to 0) keeps the
        state: the official code stops at sigma_min."""

        def advance():
            x = state['x']
            a, s, a_n, s_n, _ = levels(ctx, interval)
            x_hat = x / bcast(a, x)
            d = denoise(ctx, x_hat, a, s, ctx.times(interval.t))
            h = jnp.log(s / s_n)
            order = self.reference_order(interval.iteration)
            safe = lambda v, k: jnp.where(order >= k, v, 1.0)  # (unused below order k)
            phi1 = jnp.expm1(-h)
            x1 = bcast(s_n / s, x) * x_hat - bcast(phi1, x) * d  # DDIM's step
            r0 = safe(state['h_prev'] / h, 2)
            d1_0 = (d - state['d_prev']) / bcast(r0, x)
            x_hat_n = jnp.where(order >= 2, x1 - bcast(0.5 * phi1, x) * d1_0, x1)
            new = {'d_prev': d.astype(x.dtype), 'h_prev': h.astype(x.dtype)}
            if self.order == 3:
                r1 = safe(state['h_prev2'] / h, 3)
                d1_1 = (state['d_prev'] - state['d_prev2']) / bcast(r1, x)
                d1 = d1_0 + bcast(r0 / (r0 + r1), x) * (d1_0 - d1_1)
                d2 = (d1_0 - d1_1) / bcast(r0 + r1, x)
                phi2 = phi1 / h + 1.0
                phi3 = phi2 / h - 0.5
                x3 = x1 + bcast(phi2, x) * d1 - bcast(phi3, x) * d2
                x_hat_n = jnp.where(order >= 3, x3, x_hat_n)
                new.update(d_prev2=state['d_prev'], h_prev2=state['h_prev'])
            return {'x': (bcast(a_n, x) * x_hat_n).astype(x.dtype), **new}

        return jax.lax.cond(interval.t_next <= 0, lambda: state, advance)

    def step_nfe(self, interval: Interval):
        if self.variant == 'reference':
            return jnp.where(interval.t_next > 0, 1, 0).astype(jnp.int32)
        heun = (self.order == 3) & (interval.iteration == 0) & (interval.t_next > 0)
        return jnp.where(heun, 2, 1).astype(jnp.int32)

    def output(self, ctx: Context, state):
        return state['x']

    def summary(self) -> dict[str, Any]:
        if self.order == 1:
            return {'method': 'ddim'}
        return {'method': f'dpm_solver_{self.order}m', 'solver_variant': self.variant}


def _multistep(config, order: int) -> DPMSolverPP:
    if solver_variant(config) == 'ours':
        return DPMSolverPP(order)
    return DPMSolverPP(order, 'reference', reference_steps(config, order, f'dpm_solver_{order}m'))


DPM_SOLVER_CODE = 'github.com/LuChengTHU/dpm-solver'
# sampling.solver_variant='reference' takes the official choice in each (module docstring)
END_DEVIATION = ('ours ends with the denoiser at sigma_min; the official code returns x at '
                 'sigma_min (denoise_to_zero off)')
LOWER_ORDER_FINAL = ('below 10 steps the official code lowers the order of its last steps '
                     '(lower_order_final); ours keeps the full order')


def _spec(name: str, reference: str, **kw) -> SolverSpec:
    return SolverSpec(name=name, kind='ODE', preconditioner='corrector',
                      preconditioner_reason=ODE_CORRECTOR_REASON,
                      noise='none after the prior draw', moments='affine', grid='logsnr',
                      reference=reference, **kw)


@register_solver(_spec(
    'dpm_solver_2m', f'DPM-Solver++(2M), Lu et al. 2022 (arXiv 2211.01095), {DPM_SOLVER_CODE}',
    nfe=variant_nfe((1, 0), (1, -1)), nfe_text="N; N - 1 with `solver_variant='reference'`",
    deviations=(END_DEVIATION, LOWER_ORDER_FINAL)))
def from_config(config, sde: SDE) -> DPMSolverPP:
    return _multistep(config, 2)


@register_solver(_spec(
    'dpm_solver_3m', f'DPM-Solver++(3M), Lu et al. 2022 (arXiv 2211.01095), {DPM_SOLVER_CODE}',
    nfe=variant_nfe((1, 1), (1, -1)), nfe_text="N + 1; N - 1 with `solver_variant='reference'`",
    deviations=(END_DEVIATION, LOWER_ORDER_FINAL,
                'the second divided difference enters with -2 phi_3 (official: -phi_3) and the '
                'first step is the trapezoid over lambda (official: first order): third order '
                'where the official update measures second')))
def from_config_3m(config, sde: SDE) -> DPMSolverPP:
    return _multistep(config, 3)


@register_solver(_spec(
    'ddim', 'DDIM, Song, Meng and Ermon 2021 (arXiv 2010.02502), eta = 0 (DPM-Solver++(1))'))
def from_config_ddim(config, sde: SDE) -> DPMSolverPP:
    return DPMSolverPP(1)
