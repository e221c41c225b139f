"""Dormand-Prince 5(4) on the probability-flow ODE with per-example step control
(``sampling.method='dopri5'``): score_sde's ODE sampler (scipy's RK45 on the host) inside
one compiled ``lax.while_loop``.

The ODE (Song et al. 2021, eq. 13), integrated from t = T down to eps:

    dx/dt = v(x, t) = f(x, t) - 1/2 g(t)^2 s(x, t).

A step of size h > 0 from (x, t) with dt = -h (Dormand & Prince 1980; Hairer, Norsett & Wanner,
Solving ODEs I, table 5.2), stages

    k_1 = v(x, t),   k_i = v(x + dt sum_{j<i} a_ij k_j, t + c_i dt)   (i = 2..7),
    x_new = x + dt sum_i b_i k_i   (fifth order; row 7 of a is b, so k_7 = v(x_new, t + dt)),
    err   = dt sum_i e_i k_i       (e = b - b*, b* the embedded fourth-order weights),

k_7 is the next step's k_1 (FSAL, first same as last): 6 new score evaluations per attempted
step, accepted or not. The first attempt adds k_1 and one evaluation of the initial-step rule:
8 evaluations; with ``sampling.noise_removal`` the output adds one (Tweedie's denoiser at eps).

Error control per example, as scipy's RK45 and torchdiffeq's dopri5 (RMS norm over the
example's pixels and channels):

    E = rms(err / (atol + rtol max(|x|, |x_new|))),   accept iff E <= 1,
    h <- h clip(0.9 E^(-1/5), 0.2, 10)   (after every attempt; 10 when E = 0).

Initial step (Hairer, Norsett & Wanner II.4, as scipy's ``select_initial_step``), with
sc = atol + rtol |x|: d0 = rms(x / sc), d1 = rms(k_1 / sc), h0 = 0.01 d0 / d1 (1e-6 if either is
below 1e-5), one Euler step to t - h0 for d2 = rms((v_1 - k_1) / sc) / h0, and
h = min(100 h0, (0.01 / max(d1, d2))^(1/5), T - eps). Steps land exactly on eps
(:mod:`pds.sampling.adaptive`). Deterministic after the prior draw; no preconditioner may
enter the ODE drift.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from pds.method.sde import SDE, bcast
from pds.sampling import adaptive
from pds.sampling.context import Context
from pds.sampling.declaration import SolverSpec
from pds.sampling.grid import Interval
from pds.sampling.solver import register_solver

Array = jnp.ndarray

# sampling.adaptive: score_sde's ODE tolerances; safety and max_steps as adaptive_sde's
CONFIG_FIELDS = {'adaptive': {'rtol': 1e-5, 'atol': 1e-5, 'safety': 0.9, 'max_steps': 10000}}

C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
A = ((),
     (1 / 5,),
     (3 / 40, 9 / 40),
     (44 / 45, -56 / 15, 32 / 9),
     (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
     (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
     (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)
MIN_FACTOR, MAX_FACTOR = 0.2, 10.0


def velocity(ctx: Context, x: Array, t: Array) -> Array:
    """v(x, t) = f(x, t) - 1/2 g(t)^2 s(x, t); t (B,). One score evaluation."""
    drift, diffusion = ctx.sde.sde(x, t)
    return (drift - 0.5 * bcast(diffusion**2, x) * ctx.score_fn(x, t)).astype(x.dtype)


def combine(x: Array, dt: Array, weights, ks: list[Array]) -> Array:
    """x + dt sum_j w_j k_j (zero weights skipped); dt (B,)."""
    acc = sum(w * k for w, k in zip(weights, ks, strict=False) if w != 0.0)
    return x + bcast(dt, x) * acc


# The Dormand-Prince pieces below act on any pytree state y whose leaves carry the batch on
# their leading axis ((B, H, W, C) images, (B,) scalars), with a derivative fn(y, t) -> a
# pytree of y's structure, t (B,). A single-array y runs exactly the arithmetic of the
# sampler's own step (the sampler is this with y = x). The likelihood's augmented ODE
# (pds.likelihood) integrates [x, log-density change] forward in time with them.

Tree = Any
Derivative = Callable[[Tree, Array], Tree]


def tree_combine(y: Tree, dt: Array, weights, ks: list[Tree]) -> Tree:
    """:func:`combine` leaf by leaf: y + dt sum_j w_j k_j."""
    return jax.tree_util.tree_map(lambda a, *k: combine(a, dt, weights, list(k)), y, *ks)


def tree_rms(tree: Tree) -> Array:
    """sqrt(mean of v^2) per example over every component of every leaf, (B,); for a single
    leaf exactly :func:`pds.sampling.adaptive.rms`."""
    leaves = jax.tree_util.tree_leaves(tree)
    if len(leaves) == 1:
        return adaptive.rms(leaves[0])
    sq = sum(jnp.sum(jnp.square(v).reshape(v.shape[0], -1), axis=1) for v in leaves)
    count = sum(math.prod(v.shape[1:]) for v in leaves)
    return jnp.sqrt(sq / count)


def _euler(y: Tree, h: Array, k: Tree, direction: int) -> Tree:
    """y + direction h k, leaf by leaf (h (B,) > 0)."""
    if direction < 0:
        return jax.tree_util.tree_map(lambda a, b: a - bcast(h, a) * b, y, k)
    return jax.tree_util.tree_map(lambda a, b: a + bcast(h, a) * b, y, k)


def initial_step(fn: Derivative, y: Tree, t: Array, left: Array, direction: int,
                 rtol: float, atol: float) -> tuple[Tree, Array]:
    """(k_1, h): the first derivative and the initial step (module docstring), h <= left,
    the time left to the end point; time runs down (direction -1) or up (+1). Two
    evaluations of ``fn``."""
    k1 = fn(y, t)
    sc = jax.tree_util.tree_map(lambda a: atol + rtol * jnp.abs(a), y)
    ratio = lambda tree: jax.tree_util.tree_map(jnp.divide, tree, sc)
    d0, d1 = tree_rms(ratio(y)), tree_rms(ratio(k1))
    dtype = jax.tree_util.tree_leaves(y)[0].dtype
    h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / jnp.maximum(d1, 1e-30))
    h0 = jnp.minimum(h0, left).astype(dtype)
    t_h0 = t - h0 if direction < 0 else t + h0
    k_h0 = fn(_euler(y, h0, k1, direction), t_h0)
    d2 = tree_rms(ratio(jax.tree_util.tree_map(jnp.subtract, k_h0, k1))) / h0
    big = jnp.maximum(d1, d2)
    h1 = jnp.where(big <= 1e-15, jnp.maximum(1e-6, h0 * 1e-3),
                   (0.01 / jnp.maximum(big, 1e-30)) ** 0.2)
    return k1, jnp.minimum(jnp.minimum(100.0 * h0, h1), left).astype(dtype)


def attempt(fn: Derivative, y: Tree, t: Array, t_new: Array, dt: Array, k1: Tree,
            rtol: float, atol: float) -> tuple[Tree, Tree, Array]:
    """One attempted step of signed size dt (B,) from (y, t) to t_new (t + dt, or the end
    point it was clamped to): (y_new, k_7 = fn(y_new, t_new), E), E the error's RMS norm
    relative to atol + rtol max(|y|, |y_new|). Six evaluations of ``fn``."""
    ks = [k1]
    for i in range(1, 7):
        y_i = tree_combine(y, dt, A[i], ks)
        ks.append(fn(y_i, t_new if C[i] == 1.0 else t + C[i] * dt))
    y_new = y_i  # stage 7's input: the fifth-order solution
    zero = jax.tree_util.tree_map(jnp.zeros_like, y)
    err = jax.tree_util.tree_map(
        lambda e, a, b: e / (atol + rtol * jnp.maximum(jnp.abs(a), jnp.abs(b))),
        tree_combine(zero, dt, E, ks), y, y_new)
    return y_new, ks[6], tree_rms(err)


def next_step(h: Array, err: Array, safety: float) -> Array:
    """The step after an attempt with error norm err: h clip(safety E^(-1/5), 0.2, 10)
    (10 when E = 0)."""
    factor = jnp.where(err > 0, safety * err ** -0.2, MAX_FACTOR)
    return (h * jnp.clip(factor, MIN_FACTOR, MAX_FACTOR)).astype(h.dtype)


def pick(accept: Array, new: Tree, old: Tree) -> Tree:
    """Per example: ``new`` where ``accept`` (B,), else ``old``, leaf by leaf."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(bcast(accept, a), a, b), new, old)


@dataclasses.dataclass(frozen=True)
class Dopri5(adaptive.AdaptiveSolver):
    """Dormand-Prince 5(4), per-example steps (module docstring)."""

    method = 'dopri5'
    eps: float
    T: float = 1.0
    rtol: float = 1e-5
    atol: float = 1e-5
    safety: float = 0.9
    step_limit: int = 10000
    noise_removal: bool = True

    def init(self, ctx: Context, x: Array) -> dict[str, Array]:
        """x, t = T, and k_1 and h, set by the first step."""
        t = adaptive.start_times(x, self.T)
        return {'x': x, 't': t, 'h': jnp.zeros_like(t), 'k': jnp.zeros_like(x)}

    def step(self, ctx: Context, state: dict[str, Array], interval: Interval
             ) -> dict[str, Array]:
        x, t = state['x'], state['t']
        fn = lambda y, s: velocity(ctx, y, s)
        k1, h = jax.lax.cond(interval.iteration == 0,
                             lambda: initial_step(fn, x, t, t - self.eps, -1, self.rtol,
                                                  self.atol),
                             lambda: (state['k'], state['h']))
        h, t_new = adaptive.clamp_step(t, h, self.eps)
        x_new, k7, err = attempt(fn, x, t, t_new, -h, k1, self.rtol, self.atol)
        accept = err <= 1.0
        t_out = jnp.where(accept, t_new, t)
        x_out = adaptive.fail_unfinished(pick(accept, x_new, x), t_out, self.eps,
                                         interval.iteration, self.step_limit)
        return {'x': x_out, 't': t_out, 'k': pick(accept, k7, k1),
                'h': next_step(h, err, self.safety)}

    def step_nfe(self, interval: Interval) -> Array:
        """8 evaluations in the first attempt (k_1, the initial-step rule, 6 stages), 6 after."""
        return jnp.where(interval.iteration == 0, 8, 6).astype(jnp.int32)

    def summary(self) -> dict[str, Any]:
        return {'method': 'dopri5', 'rtol': self.rtol, 'atol': self.atol,
                'safety': self.safety, 'max_steps': self.step_limit,
                'noise_removal': self.noise_removal}


@register_solver(SolverSpec(
    name='dopri5', kind='adaptive ODE', preconditioner='none',
    preconditioner_reason='a preconditioner in an ODE drift changes the distribution the flow '
    'produces (no corrector follows an adaptive solver)',
    noise='none after the prior draw', moments='none', grid='ladder', nfe=None,
    nfe_text='6 per attempted step (8 in the first), + 1 with `noise_removal`',
    tolerance='rtol',
    reference="score_sde's ODE sampler (scipy RK45; arXiv 2011.13456) in one compiled loop; "
    'Dormand and Prince 1980',
    config_fields=CONFIG_FIELDS))
def from_config(config, sde: SDE) -> Dopri5:
    block = adaptive.adaptive_fields(config)
    return Dopri5(eps=adaptive.sampling_eps(config, sde), T=float(sde.T),
                  rtol=adaptive.number_in('sampling.adaptive.rtol', block.rtol, 0.0, 1.0,
                                          high_open=True),
                  atol=adaptive.number_in('sampling.adaptive.atol', block.atol, 0.0, 1e3),
                  safety=adaptive.number_in('sampling.adaptive.safety', block.safety, 0.0,
                                            1.0),
                  step_limit=adaptive.step_limit(block),
                  noise_removal=bool(config.sampling.noise_removal))
