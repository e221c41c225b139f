"""A Langevin corrector after each step of a fixed-step ODE solver
(``sampling.ode_corrector``: 'langevin' or 'ald'; 'none', the default, builds no wrapper).

Preconditioned Langevin dynamics dx = M M^T grad log p_t dt + sqrt(2) M dW keeps p_t for any
invertible M (:mod:`pds.sampling.correctors`), so ``sampling.n_steps_each`` corrector steps at
the end time t_next of an interval leave the marginal the ODE step aimed at in place, and may
follow any solver's step. PDS may not enter the ODE drift (M M^T there changes the
distribution the flow produces), so with ``sampling.precondition='pds'`` M goes to the
corrector only:

    state = inner.step(ctx with M = I, state, interval)       the ODE step, unpreconditioned
    x     = corrector(x_of(state), t_next, M)  n_steps_each times, unless t_next = 0
    state = with_x(state, x)

- The prior draw stays white (``white_prior``: :func:`pds.sampling.sampler.build_sampler`
  skips M z for x_T): the flow needs x_T from p_T. EDM's churn noise is drawn by the inner step,
  which sees M = I, so it is never coloured.
- No corrector after the last interval: it ends at the data (t_next = 0), where the score of
  p_0 is not the model's (VP: sigma(0) = 0).
- The corrector's step size (``snr``, the reference's signal-to-noise rule, or ALD's
  2 a_t (snr sigma(t))^2) uses a_t = alphas[i] for VP / subVP at the ladder index i of t_next,
  computed as the grid computes indices: rint((t_next - eps) / (T - eps) (N - 1)), clipped
  to [0, N - 1] (N the SDE's levels; on the ladder grid that is the next interval's index).
- Noise slots: the inner step draws slot 0 of the iteration (EDM's churn); the corrector's
  k-th step draws slot ``CORRECTOR_SLOT`` + k (k = 0 .. n_steps_each - 1), so the two never
  share a draw.
- The state: an inner solver's state is x itself or a dict holding x under 'x'
  (:func:`x_of`, :func:`with_x`). DPM-Solver++'s multistep history (its previous denoisers and
  log-steps) is kept as it was after the corrector moved x: the extrapolation then mixes a
  denoiser of the moved x with ones of the unmoved path, an approximation that is exact only
  in the limit of small corrector steps (measured in benchmarks/ode_corrector.py).
- NFE: the inner step's count (``inner.step_nfe``, which every fixed-step ODE solver defines)
  plus ``n_steps_each`` where t_next > 0 (:meth:`WithCorrector.step_nfe`; the skip is a
  ``lax.cond``, whose two branches a tracing count would both see).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from pds.method.precondition import Identity
from pds.runtime.errors import ConfigError
from pds.sampling.context import Context, StepEnv
from pds.sampling.correctors import get_corrector
from pds.sampling.grid import Interval
from pds.sampling.solver import Solver

ODE_CORRECTORS = ('none', 'langevin', 'ald')
CORRECTOR_SLOT = 1  # the corrector's first noise slot; slot 0 is the inner step's (churn)


def x_of(state) -> jnp.ndarray:
    """x of an ODE solver's state: the state itself, or its entry 'x'."""
    return state['x'] if isinstance(state, dict) else state


def with_x(state, x: jnp.ndarray):
    """The state with x replaced (the rest, e.g. a multistep history, kept)."""
    return {**state, 'x': x} if isinstance(state, dict) else x


@dataclasses.dataclass(frozen=True)
class WithCorrector:
    """``inner``'s steps, each followed by ``n_steps_each`` Langevin (or ALD) steps at t_next
    with the context's preconditioner (module docstring)."""

    inner: Solver
    corrector: str = 'langevin'
    snr: float = 0.16
    n_steps_each: int = 1
    eps: float = 1e-5  # the grid's smallest time (for the ladder index of t_next)
    white_prior = True  # x_T without M (pds.sampling.sampler.build_sampler)

    @staticmethod
    def plain(ctx: Context) -> Context:
        """The context the ODE step sees: M = I."""
        return dataclasses.replace(ctx, precond=Identity())

    def ladder_index(self, ctx: Context, t: jnp.ndarray) -> jnp.ndarray:
        """The SDE's ladder index of time t (int32 scalar; module docstring)."""
        n, T = ctx.sde.N, ctx.sde.T
        i = jnp.rint((t - self.eps) / (T - self.eps) * (n - 1))
        return jnp.clip(i, 0, n - 1).astype(jnp.int32)

    def init(self, ctx: Context, x):
        return self.inner.init(self.plain(ctx), x)

    def step(self, ctx: Context, state, interval: Interval):
        state = self.inner.step(self.plain(ctx), state, interval)
        env = StepEnv(ctx.sde, ctx.score_fn, ctx.precond, self.snr, self.n_steps_each, False,
                      ctx.batch_mean)

        def correct():
            x = x_of(state)
            noise = lambda k: ctx.noise(interval, CORRECTOR_SLOT + k)
            index = self.ladder_index(ctx, interval.t_next)
            moved, _ = get_corrector(self.corrector)(env, x, ctx.times(interval.t_next), index,
                                                     noise)
            return with_x(state, moved.astype(x.dtype))

        return jax.lax.cond(interval.t_next > 0, correct, lambda: state)

    def step_nfe(self, interval: Interval):
        extra = jnp.where(interval.t_next > 0, self.n_steps_each, 0)
        return (self.inner.step_nfe(interval) + extra).astype(jnp.int32)

    def output(self, ctx: Context, state):
        return self.inner.output(self.plain(ctx), state)

    def summary(self) -> dict[str, Any]:
        return {**self.inner.summary(), 'ode_corrector': self.corrector, 'snr': self.snr,
                'n_steps_each': self.n_steps_each}


def ode_corrector_of(config) -> str:
    """``sampling.ode_corrector`` ('none' when a config predates the field), validated."""
    kind = config.sampling.get('ode_corrector', 'none')
    if kind not in ODE_CORRECTORS:
        raise ConfigError('sampling.ode_corrector', kind,
                          'allowed: ' + ', '.join(repr(c) for c in ODE_CORRECTORS)
                          + ' (a Langevin corrector after each step of an ODE solver)')
    return kind


def from_config(config, inner: Solver, eps: float) -> WithCorrector:
    """``inner`` wrapped with ``sampling.ode_corrector``, ``snr`` and ``n_steps_each``."""
    s = config.sampling
    if not isinstance(s.n_steps_each, int) or isinstance(s.n_steps_each, bool) \
            or s.n_steps_each < 1:
        raise ConfigError('sampling.n_steps_each', s.n_steps_each, 'an integer >= 1')
    if isinstance(s.snr, bool) or not isinstance(s.snr, int | float) or not s.snr > 0:
        raise ConfigError('sampling.snr', s.snr, 'a number > 0')
    if not hasattr(inner, 'step_nfe'):
        raise TypeError(f'{type(inner).__name__} defines no step_nfe: the corrector wrapper '
                        'adds its evaluations to the inner step\'s count')
    return WithCorrector(inner, ode_corrector_of(config), float(s.snr), int(s.n_steps_each),
                         float(eps))
