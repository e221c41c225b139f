"""Loops that run a solver (:mod:`pds.sampling.solver`) inside one compiled program.

Both return (x_0, nfe) with nfe (B,) int32: the score evaluations each example used, counted
by the loop (a step is traced once with a counting score function, so the count is exact and
costs nothing at run time).

- :func:`scan_loop`: a fixed-length ``lax.scan`` over every interval of a time grid.
- :func:`while_loop`: a ``lax.while_loop`` of at most ``max_steps`` steps that stops when every
  example of the GLOBAL batch is done (``ctx.batch_any``); each example's state is frozen from
  the step it is done, so its result does not depend on which other examples share its batch
  or device.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from pds.sampling.context import Context
from pds.sampling.grid import Interval, TimeGrid
from pds.sampling.solver import Solver

Array = jnp.ndarray
OnStep = Callable[[Array], None]  # called (traced) with the iteration after each step


def _counted_step(solver: Solver, ctx: Context, state, interval: Interval):
    counted, calls = ctx.counting()
    return solver.step(counted, state, interval), len(calls)


def scan_loop(solver: Solver, ctx: Context, grid: TimeGrid, x: Array,
              on_step: OnStep | None = None) -> tuple[Array, Array]:
    def body(carry, interval):
        state, nfe = carry
        state, calls = _counted_step(solver, ctx, state, interval)
        if on_step is not None:
            on_step(interval.iteration)
        return (state, nfe + calls), None

    init = (solver.init(ctx, x), jnp.zeros((ctx.local_batch,), jnp.int32))
    (state, nfe), _ = jax.lax.scan(body, init, grid.intervals())
    return solver.output(ctx, state), nfe


def _interval_at(intervals: Interval | None, i: Array) -> Interval:
    """Interval i of the stacked grid intervals (clamped to the last), or only the iteration
    when the solver keeps its own time."""
    if intervals is None:
        zero = jnp.zeros((), jnp.float32)
        return Interval(zero, zero, jnp.zeros((), jnp.int32), i)
    j = jnp.minimum(i, intervals.t.shape[0] - 1)
    return Interval(intervals.t[j], intervals.t_next[j], intervals.index[j], i)


def _freeze(active: Array, new, old):
    """Per example: the new state where ``active``, else the old one."""

    def pick(a, b):
        mask = active.reshape(active.shape + (1,) * (a.ndim - 1))
        return jnp.where(mask, a, b)

    return jax.tree_util.tree_map(pick, new, old)


def while_loop(solver: Solver, ctx: Context, x: Array, max_steps: int,
               grid: TimeGrid | None = None, on_step: OnStep | None = None
               ) -> tuple[Array, Array]:
    """Steps until every example is done (``solver.done``; a solver without it runs
    ``max_steps`` steps) or ``max_steps`` steps were taken. ``grid`` (optional) supplies
    the intervals; without it a step gets only its iteration."""
    done_fn = getattr(solver, 'done', None)
    intervals = None if grid is None else grid.intervals()  # built once, outside the loop

    def active_of(state):
        if done_fn is None:
            return jnp.ones((ctx.local_batch,), bool)
        return jnp.logical_not(done_fn(ctx, state))

    def cond(carry):
        i, state, _ = carry
        return (i < max_steps) & ctx.batch_any(active_of(state))

    def body(carry):
        i, state, nfe = carry
        active = active_of(state)
        new, calls = _counted_step(solver, ctx, state, _interval_at(intervals, i))
        state = new if done_fn is None else _freeze(active, new, state)
        if on_step is not None:
            on_step(i)
        return i + 1, state, nfe + calls * active.astype(jnp.int32)

    init = (jnp.zeros((), jnp.int32), solver.init(ctx, x),
            jnp.zeros((ctx.local_batch,), jnp.int32))
    _, state, nfe = jax.lax.while_loop(cond, body, init)
    return solver.output(ctx, state), nfe
