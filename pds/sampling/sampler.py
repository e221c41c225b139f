"""The sampler: one solver run by one loop over the time grid, in one ``jax.jit``, with the
batch sharded over the device mesh by ``shard_map`` and the parameters replicated.

    x_T = prior_std * M z          (z from each example's prior stream, M the preconditioner;
                                    z alone for a solver with ``white_prior``)
    x_0, nfe, nonfinite_at, steps = scan_loop(solver, context, grid, x_T)   (fixed-step)
    x_0, nfe, nonfinite_at, steps = while_loop(solver, context, x_T, solver.max_steps(grid),
                                               grid)       (solvers that define max_steps)

Reproducibility: example b of the run (global index = offset + position in the global batch)
draws all its noise from its own stream (:mod:`pds.sampling.noise`), and batch statistics
gather the whole batch in global order, so a seed gives bit-identical samples on 1 or N
devices.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from pds.method.precondition import Preconditioner
from pds.method.sde import SDE, scale_and_sigma
from pds.runtime.mesh import DATA_AXIS, check_batch
from pds.sampling.context import Context
from pds.sampling.grid import TimeGrid
from pds.sampling.loops import LoopResult, scan_loop, while_loop
from pds.sampling.noise import PRIOR_TAG, draw, example_keys
from pds.sampling.solver import Solver, loop_length, takes_own_steps

Array = jnp.ndarray
ScoreBuilder = Callable[[SDE, Any], Callable[[Array, Array], Array]]


def build_sampler(sde: SDE, grid: TimeGrid, score_builder: ScoreBuilder,
                  image_shape: tuple[int, int, int], batch_size: int, mesh: Mesh,
                  solver: Solver, progress: Callable[[int], None] | None = None,
                  progress_every: int = 0, prior_mean: np.ndarray | None = None,
                  prior_spectrum: np.ndarray | None = None) -> Sampler:
    """The sampler ``sample(variables, precond, seed, offset) -> LoopResult``: x_0 of shape
    (batch_size, H, W, C), nfe, nonfinite_at and steps (batch_size,), sharded over ``mesh``
    on the batch axis.
    ``offset`` is the global index of the first example (round k of size B uses offset k B).
    ``progress(i)`` is called on the host about every ``progress_every`` iterations.
    ``prior_mean`` (H, W, C) (``sampling.prior='mean'``): x_T is shifted by alpha(T) mu, the
    data mean carried to the prior's time. ``prior_spectrum`` lambda (H, W // 2 + 1, C)
    (``sampling.prior='gaussian'``): x_T's white draw z is coloured per orthonormal Fourier
    mode to the marginal's variance alpha(T)^2 lambda + std(T)^2 (no preconditioner then).
    A solver with ``white_prior`` (:mod:`pds.sampling.with_corrector`) gets x_T without M."""
    local_b = check_batch('eval.batch_size', batch_size, mesh)
    white = getattr(solver, 'white_prior', False)  # x_T without M (an ODE solver's corrector)
    own_steps = takes_own_steps(solver)
    n = loop_length(solver, grid)
    every = progress_every if progress_every > 0 else max(1, n // 50)
    shift = colour = None
    alpha_T, sigma_T = scale_and_sigma(sde, jnp.float32(sde.T))  # std(T) = alpha sigma
    if prior_spectrum is not None:
        colour = alpha_T * jnp.sqrt(jnp.asarray(prior_spectrum, jnp.float32) + sigma_T**2)
    if prior_mean is not None:
        shift = (alpha_T * jnp.asarray(prior_mean, jnp.float32))[None]

    def batch_mean(v):
        return jnp.mean(jax.lax.all_gather(v, DATA_AXIS, tiled=True))

    def batch_any(v):
        return jax.lax.psum(jnp.sum(v.astype(jnp.int32)), DATA_AXIS) > 0

    def report(i):
        jax.debug.callback(lambda k: progress(int(k)), i + 1)

    def body(variables, precond: Preconditioner, seed, offset):
        device = jax.lax.axis_index(DATA_AXIS)
        keys = example_keys(seed, offset + device * local_b + jnp.arange(local_b))
        ctx = Context(sde, score_builder(sde, variables), precond, keys, image_shape,
                      batch_mean, batch_any)
        z = draw(keys, image_shape, PRIOR_TAG)
        if colour is None:
            x = sde.prior_sampling(z if white else precond.noise(z))
        else:
            zf = jnp.fft.rfft2(z, axes=(1, 2), norm='ortho') * colour
            x = jnp.fft.irfft2(zf, s=image_shape[:2], axes=(1, 2), norm='ortho')
        if shift is not None:
            x = x + shift

        def on_step(i):
            due = (device == 0) & (((i + 1) % every == 0) | (i + 1 == n))
            jax.lax.cond(due, lambda: report(i), lambda: None)

        hook = on_step if progress is not None else None
        if not own_steps:
            return scan_loop(solver, ctx, grid, x, hook)
        return while_loop(solver, ctx, x, n, grid, hook)

    sharded = jax.shard_map(body, mesh=mesh, in_specs=(P(), P(), P(), P()),
                            out_specs=LoopResult(*(P(DATA_AXIS),) * 4),
                            check_vma=False)
    return Sampler(jax.jit(sharded))


class Sampler:
    """A compiled sampler: ``compile(variables, precond)`` once (ahead of time, timed), then
    ``sampler(variables, precond, seed, offset) -> x_0`` per round (``run`` also returns the
    per-example NFE)."""

    def __init__(self, jitted):
        self.jitted = jitted
        self._compiled = None
        self.compile_seconds = 0.0

    @staticmethod
    def _scalars(seed, offset):
        return jnp.asarray(seed, jnp.uint32), jnp.asarray(offset, jnp.int32)

    def compile(self, variables, precond: Preconditioner) -> float:
        t0 = time.perf_counter()
        lowered = self.jitted.lower(variables, precond, *self._scalars(0, 0))
        self._compiled = lowered.compile()
        self.compile_seconds = time.perf_counter() - t0
        return self.compile_seconds

    def hlo_text(self) -> str:
        """The optimised HLO of the compiled sampler (after ``compile``)."""
        if self._compiled is None:
            raise RuntimeError('hlo_text() needs compile(variables, precond) first')
        return self._compiled.as_text()

    def run(self, variables, precond: Preconditioner, seed: int, offset: int = 0
            ) -> LoopResult:
        """(x_0, nfe, nonfinite_at, steps): the samples, each example's score evaluations,
        the first iteration that left its state non-finite (-1: none) and the steps it
        attempted."""
        if self._compiled is None:
            self.compile(variables, precond)
        return self._compiled(variables, precond, *self._scalars(seed, offset))

    def __call__(self, variables, precond: Preconditioner, seed: int, offset: int = 0
                 ) -> jax.Array:
        return self.run(variables, precond, seed, offset)[0]


def to_uint8(x: np.ndarray, centered: bool) -> np.ndarray:
    """score_sde's image convention: [0, 1] (or [-1, 1] if centered) -> clip(255 x) as uint8."""
    x = (np.asarray(x, np.float32) + 1.0) / 2.0 if centered else np.asarray(x, np.float32)
    return np.clip(x * 255.0, 0, 255).astype(np.uint8)
