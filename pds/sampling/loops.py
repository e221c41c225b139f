"""Loops that run a solver (:mod:`pds.sampling.solver`) inside one compiled program.

Both return a :class:`LoopResult`: x_0; nfe (B,) int32, the score evaluations each example
used, counted by the loop (a step is traced once with a counting score function, so the count
is exact and costs nothing at run time; so is ``output``, which may end with a denoising
evaluation); nonfinite_at (B,) int32, the first iteration after
which the example's state held a NaN or infinity (-1: never), a flag carried in the loop;
and steps (B,) int32, the steps each example attempted (the grid's N in the scan; in the while
loop the iterations it was not yet done in).

- :func:`scan_loop`: a fixed-length ``lax.scan`` over every interval of a time grid.
- :func:`while_loop`: a ``lax.while_loop`` of at most ``max_steps`` steps that stops when every
  example of the GLOBAL batch is done (``ctx.batch_any``); each example's state is frozen from
  the step it is done, so its result does not depend on which other examples share its batch
  or device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from pds.sampling.context import Context
from pds.sampling.grid import Interval, TimeGrid
from pds.sampling.solver import Solver

Array = jnp.ndarray
OnStep = Callable[[Array], None]  # called (traced) with the iteration after each step


class LoopResult(NamedTuple):
    x: Array  # (B, H, W, C) x_0
    nfe: Array  # (B,) int32 score evaluations
    nonfinite_at: Array  # (B,) int32 first iteration that left a non-finite state; -1: none
    steps: Array  # (B,) int32 steps the example attempted (scan: the grid's N)


def counted_step(solver: Solver, ctx: Context, state, interval: Interval):
    """(new state, score evaluations of the step): counted while tracing, or given by the
    solver's ``step_nfe(interval)`` when its step evaluates the score a number of times that
    depends on the interval (a ``lax.cond`` traces both branches)."""
    counted, calls = ctx.counting()
    new = solver.step(counted, state, interval)
    step_nfe = getattr(solver, 'step_nfe', None)
    return new, (len(calls) if step_nfe is None else step_nfe(interval))


def _counted_output(solver: Solver, ctx: Context, state) -> tuple[Array, int]:
    """(x_0, score evaluations of ``solver.output``: a final denoising step, say)."""
    counted, calls = ctx.counting()
    return solver.output(counted, state), len(calls)


def nonfinite_rows(state, batch: int) -> Array:
    """(batch,) bool: the example's part of any floating leaf (leading axis ``batch``) holds
    a NaN or infinity."""
    bad = jnp.zeros((batch,), bool)
    for leaf in jax.tree_util.tree_leaves(state):
        if jnp.issubdtype(leaf.dtype, jnp.inexact) and leaf.ndim and leaf.shape[0] == batch:
            bad = bad | ~jnp.all(jnp.isfinite(leaf.reshape(batch, -1)), axis=1)
    return bad


def _mark(nonfinite_at: Array, state, iteration: Array) -> Array:
    bad = nonfinite_rows(state, nonfinite_at.shape[0])
    return jnp.where((nonfinite_at < 0) & bad, iteration, nonfinite_at)


def _no_mark(batch: int) -> Array:
    return jnp.full((batch,), -1, jnp.int32)


def scan_loop(solver: Solver, ctx: Context, grid: TimeGrid, x: Array,
              on_step: OnStep | None = None) -> LoopResult:
    def body(carry, interval):
        state, nfe, bad_at = carry
        state, calls = counted_step(solver, ctx, state, interval)
        if on_step is not None:
            on_step(interval.iteration)
        return (state, nfe + calls, _mark(bad_at, state, interval.iteration)), None

    b = ctx.local_batch
    init = (solver.init(ctx, x), jnp.zeros((b,), jnp.int32), _no_mark(b))
    (state, nfe, bad_at), _ = jax.lax.scan(body, init, grid.intervals())
    x, calls = _counted_output(solver, ctx, state)
    return LoopResult(x, nfe + calls, bad_at, jnp.full((b,), grid.num_steps, jnp.int32))


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
               ) -> LoopResult:
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
        i, state = carry[:2]
        return (i < max_steps) & ctx.batch_any(active_of(state))

    def body(carry):
        i, state, nfe, bad_at, steps = carry
        active = active_of(state)
        new, calls = counted_step(solver, ctx, state, _interval_at(intervals, i))
        state = new if done_fn is None else _freeze(active, new, state)
        if on_step is not None:
            on_step(i)
        return (i + 1, state, nfe + calls * active.astype(jnp.int32),
                _mark(bad_at, state, i), steps + active.astype(jnp.int32))

    b = ctx.local_batch
    zeros = jnp.zeros((b,), jnp.int32)
    init = (jnp.zeros((), jnp.int32), solver.init(ctx, x), zeros, _no_mark(b), zeros)
    _, state, nfe, bad_at, steps = jax.lax.while_loop(cond, body, init)
    x, calls = _counted_output(solver, ctx, state)
    return LoopResult(x, nfe + calls, bad_at, steps)
