"""The "Gotta Go Fast" adaptive reverse-SDE solver (Jolicoeur-Martineau et al. 2021,
arXiv 2105.14080, Algorithm 1) with per-example step control (``sampling.method='adaptive_sde'``).

The reverse SDE from t = T down to eps, written for a positive step h (time t -> t - h):

    x(t - h) = x(t) - int [f - 1/2 g^2 (I + M M^T) s] dt + int g M dw,

with M the preconditioner: for M = I the plain reverse SDE (drift f - g^2 s, noise g z);
with PDS the invariant form (``sampling.pds.predictor_form='invariant'``,
:mod:`pds.sampling.predictors`), whose marginals are the forward ones, so the error-controlled
solution converges to the data distribution. (The reference form multiplies the whole drift
by M M^T and does not keep the marginals: it is refused.) One attempt, with b(x, t) = f(x, t)
- 1/2 g(t)^2 (I + M M^T) s(x, t) and ONE draw z per example shared by both stages:

    K1 = -h b(x, t) + sqrt(h) g(t) M z,              x'  = x + K1          (Euler-Maruyama)
    K2 = -h b(x', t - h) + sqrt(h) g(t - h) M z,      x'' = x + (K1 + K2) / 2 (improved Euler)

    delta = max(eps_abs, eps_rel max(|x'|, |x'_prev|))   (elementwise),
    E = ||(x'' - x') / delta||_2 / sqrt(n)                (n pixels x channels of the example),

x'_prev the Euler-Maruyama value x' of the example's last ACCEPTED step (x_T before the
first), as the authors' code does (``error_use_prev``). If E <= 1 the step is accepted with
extrapolation (x <- x'', the higher-order value; t <- t - h; x'_prev <- x'); after every attempt

    h <- min(t - eps, theta h E^(-r))          (t the time after the attempt)

with no other bound on growth (as the paper; t - eps when E = 0). Two score evaluations per
attempt; the output adds one with ``sampling.noise_removal`` (Tweedie's denoiser at eps, the
paper's final step without noise; :mod:`pds.sampling.adaptive`).

Settings (``sampling.adaptive``): eps_rel (the paper tries 0.01 to 0.1), eps_abs (None: one
uint8 level of the data range, 1/255 ~ 0.0039 for [0, 1] data as the paper's VE runs, 2/255
~ 0.0078 for centered [-1, 1] data as its VP runs), exponent r in [0.5, 1] (0.9, the authors'
code default), theta = ``safety`` (0.9), h_init (0.01), max_steps.

Noise: attempt i of an example draws z from its own stream with tag i + 1 (``ctx.noise``,
the loop counter is the attempt counter of every example still running), so a rejected step
is retried with a fresh z and the samples do not depend on the batch or device split.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from pds.method.sde import SDE, bcast
from pds.runtime.errors import ConfigError, check_choice
from pds.sampling import adaptive
from pds.sampling.context import Context, StepEnv
from pds.sampling.declaration import SolverSpec
from pds.sampling.grid import Interval
from pds.sampling.predictors import invariant_score_term
from pds.sampling.solver import register_solver

Array = jnp.ndarray

# sampling.adaptive (module docstring; eps_abs a float placeholder: None, one uint8 level);
# safety and max_steps as dopri5's
CONFIG_FIELDS = {'adaptive': {'eps_rel': 0.01, 'eps_abs': float, 'exponent': 0.9,
                              'h_init': 0.01, 'safety': 0.9, 'max_steps': 10000}}


def reverse_drift(ctx: Context, x: Array, t: Array) -> tuple[Array, Array]:
    """(b(x, t), g(t)): the invariant-form reverse drift f - 1/2 g^2 (I + M M^T) s (one score
    evaluation; :func:`pds.sampling.predictors.invariant_score_term`) and the diffusion
    g (B,); t (B,)."""
    env = StepEnv(ctx.sde, ctx.score_fn, ctx.precond, 0.0, 1, False, ctx.batch_mean,
                  'invariant')
    f, g = ctx.sde.sde(x, t)
    return (f - invariant_score_term(env, x, t, g**2)).astype(x.dtype), g


@dataclasses.dataclass(frozen=True)
class GottaGoFast(adaptive.AdaptiveSolver):
    """Euler-Maruyama / improved-Euler pair with per-example step control (module docstring)."""

    method = 'adaptive_sde'
    eps: float
    eps_abs: float
    T: float = 1.0
    eps_rel: float = 0.01
    exponent: float = 0.9
    safety: float = 0.9
    h_init: float = 0.01
    step_limit: int = 10000
    noise_removal: bool = True

    def init(self, ctx: Context, x: Array) -> dict[str, Array]:
        t = adaptive.start_times(x, self.T)
        return {'x': x, 'x_prev': x, 't': t, 'h': jnp.full_like(t, self.h_init)}

    def increments(self, ctx: Context, x: Array, t: Array, h: Array, t_next: Array,
                   z: Array) -> tuple[Array, Array]:
        """(K1, K2) of one attempt (module docstring); M z enters both."""
        noise = ctx.precond.noise(z)
        root = jnp.sqrt(h)
        b1, g1 = reverse_drift(ctx, x, t)
        k1 = -bcast(h, x) * b1 + bcast(root * g1, x) * noise
        b2, g2 = reverse_drift(ctx, x + k1, t_next)
        k2 = -bcast(h, x) * b2 + bcast(root * g2, x) * noise
        return k1, k2

    def step(self, ctx: Context, state: dict[str, Array], interval: Interval
             ) -> dict[str, Array]:
        x, t = state['x'], state['t']
        h, t_next = adaptive.clamp_step(t, state['h'], self.eps)
        k1, k2 = self.increments(ctx, x, t, h, t_next, ctx.noise(interval, 0))
        x_em, x_heun = x + k1, x + 0.5 * (k1 + k2)
        delta = jnp.maximum(self.eps_abs,
                            self.eps_rel * jnp.maximum(jnp.abs(x_em), jnp.abs(state['x_prev'])))
        err = adaptive.rms((x_heun - x_em) / delta)
        accept = err <= 1.0
        pick = lambda a, b: jnp.where(bcast(accept, a), a, b)
        t_out = jnp.where(accept, t_next, t)
        grow = jnp.where(err > 0, self.safety * h * err ** -self.exponent, jnp.inf)
        x_out = adaptive.fail_unfinished(pick(x_heun, x), t_out, self.eps, interval.iteration,
                                         self.step_limit)
        return {'x': x_out, 'x_prev': pick(x_em, state['x_prev']), 't': t_out,
                'h': jnp.minimum(t_out - self.eps, grow).astype(h.dtype)}

    def summary(self) -> dict[str, Any]:
        return {'method': 'adaptive_sde', 'eps_rel': self.eps_rel, 'eps_abs': self.eps_abs,
                'exponent': self.exponent, 'safety': self.safety, 'h_init': self.h_init,
                'max_steps': self.step_limit, 'noise_removal': self.noise_removal}


def check_pds_form(config) -> None:
    """ConfigError unless PDS, if used, is in the invariant predictor form."""
    s = config.sampling
    form = s.pds.get('predictor_form', 'reference')
    check_choice('sampling.pds.predictor_form', form, ('reference', 'invariant'))
    if s.precondition == 'pds' and form != 'invariant':
        raise ConfigError('sampling.pds.predictor_form', form,
                          "'invariant' with sampling.method='adaptive_sde' and "
                          "sampling.precondition='pds' (the reference form does not keep the "
                          'marginals, so an error-controlled solver would converge to the '
                          'wrong distribution)')


def default_eps_abs(config) -> float:
    """One uint8 level of the data range: 1/255 for [0, 1] data, 2/255 when centered."""
    return (2.0 if config.data.centered else 1.0) / 255.0


@register_solver(SolverSpec(
    name='adaptive_sde', kind='adaptive SDE', preconditioner='sde',
    preconditioner_reason="the invariant form (sampling.pds.predictor_form='invariant') keeps "
    'the marginals for any invertible M; the reference form is refused',
    noise='slot 0 per attempt, shared by both stages', moments='none', grid='ladder',
    nfe=None, nfe_text='2 per attempted step, + 1 with `noise_removal`',
    where_text="x_T and both stages' drift and noise, `predictor_form='invariant'` only",
    tolerance='eps_rel',
    reference='Gotta Go Fast, Jolicoeur-Martineau et al. 2021 (arXiv 2105.14080), Algorithm 1',
    config_fields=CONFIG_FIELDS))
def from_config(config, sde: SDE) -> GottaGoFast:
    s = config.sampling
    check_pds_form(config)
    if s.probability_flow:
        raise ConfigError('sampling.probability_flow', s.probability_flow,
                          "False with sampling.method='adaptive_sde' (it solves the reverse "
                          "SDE; sampling.method='dopri5' solves the probability-flow ODE)")
    block = adaptive.adaptive_fields(config)
    eps = adaptive.sampling_eps(config, sde)
    eps_abs = block.eps_abs if block.eps_abs is not None else default_eps_abs(config)
    field = lambda name: f'sampling.adaptive.{name}'
    return GottaGoFast(
        eps=eps, T=float(sde.T),
        eps_abs=adaptive.number_in(field('eps_abs'), eps_abs, 0.0, 1e3),
        eps_rel=adaptive.number_in(field('eps_rel'), block.eps_rel, 0.0, 1.0, high_open=True),
        exponent=adaptive.number_in(field('exponent'), block.exponent, 0.5, 1.0,
                                    low_open=False),
        safety=adaptive.number_in(field('safety'), block.safety, 0.0, 1.0),
        h_init=adaptive.number_in(field('h_init'), block.h_init, 0.0, float(sde.T) - eps),
        step_limit=adaptive.step_limit(block),
        noise_removal=bool(s.noise_removal))
