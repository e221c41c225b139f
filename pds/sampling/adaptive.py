"""Pieces shared by the error-controlled solvers (``dopri5``, ``adaptive_sde``).

Both run in :func:`pds.sampling.loops.while_loop`: every iteration is one ATTEMPTED step for
every example that is not done, each example with its own time t and step size h (state
leaves (B,) and (B, H, W, C), so the loop freezes finished examples). Time runs from T down
to eps (the sampling grid's smallest time); the step size is clamped to the distance left,

    h <- min(h, t - eps),   t_next = eps if h = t - eps else max(t - h, eps),

so the last accepted step lands exactly on eps, and an example is done when t <= eps.

An example still short of eps after ``sampling.adaptive.max_steps`` attempts gets a NaN state
at the last attempt, so the run stops with a RunError naming it (``--mode=sample`` checks every
example's state) instead of returning an unfinished sample.

With ``sampling.noise_removal`` the output is Tweedie's denoiser at eps (one score
evaluation, counted by the loop, :mod:`pds.sampling.denoiser`):

    x_0 = E[x(0) | x(eps)] = x / alpha + alpha sigma^2 s(x, eps),

score_sde's final denoising step (its ODE sampler applies it when ``noise_removal``), which
the "Gotta Go Fast" sampler also ends with.
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp

from pds.method.sde import SDE, bcast, scale_and_sigma
from pds.runtime.errors import ConfigError
from pds.sampling.context import Context
from pds.sampling.denoiser import denoise

Array = jnp.ndarray

MAX_STEP_LIMIT = 1_000_000  # sampling.adaptive.max_steps: attempts per example


def rms(v: Array) -> Array:
    """sqrt(mean over pixels and channels of v^2) per example: (B, H, W, C) -> (B,)."""
    return jnp.sqrt(jnp.mean(jnp.square(v), axis=tuple(range(1, v.ndim))))


def start_times(x: Array, T: float) -> Array:
    """t = T per example, (B,) in x's dtype."""
    return jnp.full(x.shape[:1], T, x.dtype)


def clamp_step(t: Array, h: Array, eps: float) -> tuple[Array, Array]:
    """(h clamped to the distance left, the time after the step): (B,) each (module
    docstring: the last step lands exactly on eps)."""
    left = t - eps
    h = jnp.minimum(h, left)
    return h, jnp.where(h >= left, jnp.asarray(eps, t.dtype), jnp.maximum(t - h, eps))


def clamp_step_up(t: Array, h: Array, end: float) -> tuple[Array, Array]:
    """:func:`clamp_step` for time running up to ``end`` (the likelihood's ODE, eps to T):
    h <- min(h, end - t), t_next = end if h = end - t else min(t + h, end)."""
    left = end - t
    h = jnp.minimum(h, left)
    return h, jnp.where(h >= left, jnp.asarray(end, t.dtype), jnp.minimum(t + h, end))


def fail_unfinished(x: Array, t: Array, eps: float, iteration: Array, limit: int) -> Array:
    """x with NaN rows for the examples that are not done at the last allowed attempt."""
    stuck = (iteration >= limit - 1) & (t > eps)
    return jnp.where(bcast(stuck, x), jnp.nan, x)


def tweedie(ctx: Context, x: Array, t: Array) -> Array:
    """E[x(0) | x(t)] (one score evaluation); t (B,)."""
    alpha, sigma = scale_and_sigma(ctx.sde, t)
    return denoise(ctx, x / bcast(alpha, x), alpha, sigma, t).astype(x.dtype)


def sampling_eps(config, sde: SDE) -> float:
    """The sampling grid's smallest time eps (``pds.sampling.grid.sampling_schedule``): the
    adaptive solvers integrate from ``sde.T`` to it."""
    from pds.sampling.grid import sampling_schedule

    return float(sampling_schedule(config)[1].eps)


def check_grid_eps(grid, eps: float, method: str) -> None:
    """ValueError unless the sampler's grid ends at the eps the solver was built for."""
    if float(grid.eps) != eps:
        raise ValueError(f'{method} was built for eps={eps} but runs on a grid ending at '
                         f'{grid.eps}: build the solver from the same config as the grid')


def adaptive_fields(config) -> Any:
    """The block ``sampling.adaptive`` (its declared defaults when a config predates it)."""
    from ml_collections import ConfigDict

    from pds.sampling.declaration import config_value, declared_config_blocks

    block = config.sampling.get('adaptive', None)
    if block is not None:
        return block
    return ConfigDict({k: config_value(v) for k, v in declared_config_blocks()['adaptive'].items()})


def number_in(field: str, value: Any, low: float, high: float, *, low_open: bool = True,
              high_open: bool = False) -> float:
    """``value`` as a float; ConfigError unless a finite number in the interval."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        ok = False
    else:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
    if not ok:
        lo, hi = '(' if low_open else '[', ')' if high_open else ']'
        raise ConfigError(field, value, f'a number in {lo}{low:g}, {high:g}{hi}')
    return float(value)


def step_limit(block) -> int:
    """``sampling.adaptive.max_steps``: an integer in [1, MAX_STEP_LIMIT]."""
    v = block.max_steps
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_STEP_LIMIT:
        raise ConfigError('sampling.adaptive.max_steps', v,
                          f'an integer in [1, {MAX_STEP_LIMIT}] (attempted steps per example)')
    return int(v)


class AdaptiveSolver:
    """What the error-controlled solvers share (each is a frozen dataclass with the fields
    ``eps``, ``step_limit`` and ``noise_removal`` and the class attribute ``method``): the
    per-example stop at eps, the while loop's bound, and the output, Tweedie's denoiser at
    eps when ``noise_removal`` (module docstring)."""

    method = ''

    def done(self, ctx: Context, state: dict[str, Array]) -> Array:
        return state['t'] <= self.eps

    def max_steps(self, grid) -> int:
        check_grid_eps(grid, self.eps, self.method)
        return self.step_limit

    def output(self, ctx: Context, state: dict[str, Array]) -> Array:
        if self.noise_removal:
            return tweedie(ctx, state['x'], state['t'])
        return state['x']
