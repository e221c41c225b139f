"""The probability-flow ODE augmented with the change of log-density, solved from eps up to T
in one compiled loop, per example.

With v(x, t) = f(x, t) - 1/2 g(t)^2 s(x, t) (:func:`pds.sampling.adaptive_ode.velocity`), the
flow's density obeys d log p_t(x(t)) / dt = -div v(x(t), t) (the instantaneous change of
variables; Chen et al. 2018, arXiv:1806.07366; Song et al. 2021, arXiv:2011.13456,
appendix D.2), so integrating

    d/dt [x, delta] = [v(x, t), div v(x, t)],   x(eps) = x, delta(eps) = 0,

up to T gives log p_eps(x) = log p_T(x(T)) + delta(T), with the prior pi in place of p_T
(:mod:`pds.likelihood.priors`). The state y = {'x': (B, H, W, C), 'delta': (B,)}; its
derivative costs one drift evaluation and the divergence's JVPs
(:mod:`pds.likelihood.divergence`). One evaluation of the augmented derivative counts as
one NFE, as score_sde counts scipy's function evaluations.

Solvers (the loops of :mod:`pds.sampling.loops`):

- :class:`AdaptiveLikelihood` ('dopri5'): Dormand-Prince 5(4) with per-example step control,
  the sampler's pieces (:mod:`pds.sampling.adaptive_ode`: tableau, initial step rule, error
  norm and step update) run forward in time on the augmented state; the error norm is the
  RMS over the D + 1 components of an example (score_sde runs scipy's RK45 with one norm over
  the whole batch). 8 NFE in the first attempt, 6 in each later one.
- :class:`FixedStepLikelihood` ('euler', 'heun'): explicit Euler (1 NFE per step) or Heun's
  trapezoidal rule (2 NFE per step) on a fixed grid of times eps = t_0 < ... < t_N = T.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pds.likelihood.divergence import Divergence
from pds.method.sde import bcast
from pds.sampling import adaptive, adaptive_ode
from pds.sampling.context import Context
from pds.sampling.grid import Interval

Array = jnp.ndarray
State = dict[str, Any]
FIXED_METHODS = ('euler', 'heun')
METHODS = ('dopri5', *FIXED_METHODS)


def derivative(ctx: Context, divergence: Divergence, probes: Array | None):
    """fn(y, t) -> {'x': v(x, t), 'delta': div v(x, t)} of the augmented ODE."""

    def fn(y: State, t: Array) -> State:
        v, div = divergence(lambda x: adaptive_ode.velocity(ctx, x, t), y['x'], probes)
        return {'x': v, 'delta': div.astype(y['delta'].dtype)}

    return fn


def initial_state(ctx: Context, divergence: Divergence, x: Array, t0: float) -> State:
    """y = (x, 0) at time t0, and the probes (held fixed along the trajectory)."""
    y = {'x': x, 'delta': jnp.zeros(x.shape[:1], x.dtype)}
    state = {'y': y, 't': jnp.full(x.shape[:1], t0, x.dtype)}
    probes = divergence.probes(ctx.keys, ctx.image_shape)
    if probes is not None:
        state['probes'] = probes
    return state


@dataclasses.dataclass(frozen=True)
class AdaptiveLikelihood:
    """Dormand-Prince 5(4) from eps up to T, per-example steps (module docstring). An
    example still short of T after ``step_limit`` attempts gets a NaN state (the run then
    stops with an error naming it)."""

    divergence: Divergence
    eps: float
    T: float = 1.0
    rtol: float = 1e-5
    atol: float = 1e-5
    safety: float = 0.9
    step_limit: int = 10000
    method = 'dopri5'

    def init(self, ctx: Context, x: Array) -> State:
        state = initial_state(ctx, self.divergence, x, self.eps)
        zero = jnp.zeros_like(state['t'])
        return {**state, 'h': zero, 'k': jax.tree_util.tree_map(jnp.zeros_like, state['y'])}

    def step(self, ctx: Context, state: State, interval: Interval) -> State:
        y, t = state['y'], state['t']
        fn = derivative(ctx, self.divergence, state.get('probes'))
        k1, h = jax.lax.cond(
            interval.iteration == 0,
            lambda: adaptive_ode.initial_step(fn, y, t, self.T - t, 1, self.rtol, self.atol),
            lambda: (state['k'], state['h']))
        h, t_new = adaptive.clamp_step_up(t, h, self.T)
        y_new, k7, err = adaptive_ode.attempt(fn, y, t, t_new, h, k1, self.rtol, self.atol)
        accept = err <= 1.0
        t_out = jnp.where(accept, t_new, t)
        stuck = (interval.iteration >= self.step_limit - 1) & (t_out < self.T)
        y_out = jax.tree_util.tree_map(lambda a: jnp.where(bcast(stuck, a), jnp.nan, a),
                                       adaptive_ode.pick(accept, y_new, y))
        return {**state, 'y': y_out, 't': t_out, 'k': adaptive_ode.pick(accept, k7, k1),
                'h': adaptive_ode.next_step(h, err, self.safety)}

    def done(self, ctx: Context, state: State) -> Array:
        return state['t'] >= self.T

    def max_steps(self, grid=None) -> int:
        return self.step_limit

    def step_nfe(self, interval: Interval) -> Array:
        """8 evaluations in the first attempt (k_1, the initial-step rule, 6 stages), 6 after."""
        return jnp.where(interval.iteration == 0, 8, 6).astype(jnp.int32)

    def output(self, ctx: Context, state: State) -> State:
        return state['y']

    def summary(self) -> dict:
        return {'solver': 'dopri5', 'rtol': self.rtol, 'atol': self.atol,
                'safety': self.safety, 'max_steps': self.step_limit, 'eps': self.eps,
                'T': self.T, **self.divergence.summary()}


@dataclasses.dataclass(frozen=True)
class ForwardGrid:
    """Times eps = t_0 < ... < t_N = T (float32) as the scan loop's intervals."""

    times: np.ndarray

    @property
    def num_steps(self) -> int:
        return int(self.times.shape[0]) - 1

    def intervals(self) -> Interval:
        n = self.num_steps
        return Interval(jnp.asarray(self.times[:-1]), jnp.asarray(self.times[1:]),
                        jnp.zeros((n,), jnp.int32), jnp.arange(n, dtype=jnp.int32))


@dataclasses.dataclass(frozen=True)
class FixedStepLikelihood:
    """Euler or Heun on a fixed grid from eps to T (module docstring)."""

    divergence: Divergence
    grid: ForwardGrid
    method: str = 'heun'

    def init(self, ctx: Context, x: Array) -> State:
        return initial_state(ctx, self.divergence, x, float(self.grid.times[0]))

    def step(self, ctx: Context, state: State, interval: Interval) -> State:
        y = state['y']
        t = ctx.times(interval.t)
        t_next = ctx.times(interval.t_next)
        dt = t_next - t
        fn = derivative(ctx, self.divergence, state.get('probes'))
        k1 = fn(y, t)
        y_euler = adaptive_ode.tree_combine(y, dt, (1.0,), [k1])
        if self.method == 'euler':
            return {**state, 'y': y_euler, 't': t_next}
        k2 = fn(y_euler, t_next)
        return {**state, 'y': adaptive_ode.tree_combine(y, dt, (0.5, 0.5), [k1, k2]),
                't': t_next}

    def step_nfe(self, interval: Interval) -> Array:
        return jnp.asarray(1 if self.method == 'euler' else 2, jnp.int32)

    def output(self, ctx: Context, state: State) -> State:
        return state['y']

    def summary(self) -> dict:
        t = self.grid.times
        return {'solver': self.method, 'steps': self.grid.num_steps, 'eps': float(t[0]),
                'T': float(t[-1]), **self.divergence.summary()}
