"""The likelihood as one compiled program: a batch of data in, per-example log-densities out,
sharded over the device mesh by ``shard_map`` (parameters replicated), as the sampler
(:mod:`pds.sampling.sampler`).

    keys   = example_keys(seed, offset + global position)      (the Hutchinson probes)
    y(T)   = loop(solver, x)          (while loop for dopri5, scan for fixed grids)
    log p  = log pi(x(T)) + delta(T)  (nats per image)

Example b of a run (global index offset + b) draws its probes from its own key and its
trajectory depends only on its own data, so its numbers do not depend on the batch split or
the device count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from pds.likelihood.ode import AdaptiveLikelihood, FixedStepLikelihood
from pds.likelihood.priors import Prior
from pds.method.precondition import Identity
from pds.method.sde import SDE
from pds.runtime.mesh import DATA_AXIS, check_batch
from pds.sampling.context import Context
from pds.sampling.loops import scan_loop, while_loop
from pds.sampling.noise import example_keys

Array = jnp.ndarray
ScoreBuilder = Callable[[SDE, Any], Callable[[Array, Array], Array]]
Solver = AdaptiveLikelihood | FixedStepLikelihood


class LikelihoodResult(NamedTuple):
    logp: Array  # (B,) log p_eps(x) in nats per image: prior_logp + delta
    delta: Array  # (B,) int_eps^T div v dt along the trajectory
    prior_logp: Array  # (B,) log pi(x(T))
    x_T: Array  # noqa: N815  (B, H, W, C) the trajectory's end point
    nfe: Array  # (B,) int32 evaluations of the augmented derivative
    steps: Array  # (B,) int32 steps attempted
    nonfinite_at: Array  # (B,) int32 first iteration with a non-finite state; -1: none


def build_likelihood(sde: SDE, score_builder: ScoreBuilder, image_shape: tuple[int, int, int],
                     batch_size: int, mesh: Mesh, solver: Solver, prior: Prior,
                     field: str = 'eval.batch_size') -> Likelihood:
    """``likelihood(variables, x, seed, offset) -> LikelihoodResult`` for x (batch_size, H, W,
    C) sharded over ``mesh`` on the batch axis; ``offset`` is the global index of x's first
    row (round k of size B: k B)."""
    local_b = check_batch(field, batch_size, mesh)

    def batch_mean(v):
        return jnp.mean(jax.lax.all_gather(v, DATA_AXIS, tiled=True))

    def batch_any(v):
        return jax.lax.psum(jnp.sum(v.astype(jnp.int32)), DATA_AXIS) > 0

    def body(variables, x, seed, offset):
        device = jax.lax.axis_index(DATA_AXIS)
        keys = example_keys(seed, offset + device * local_b + jnp.arange(local_b))
        ctx = Context(sde, score_builder(sde, variables), Identity(), keys, image_shape,
                      batch_mean, batch_any)
        if isinstance(solver, AdaptiveLikelihood):
            res = while_loop(solver, ctx, x, solver.step_limit)
        else:
            res = scan_loop(solver, ctx, solver.grid, x)
        y = res.x
        prior_logp = prior.logp(y['x'])
        return LikelihoodResult(prior_logp + y['delta'], y['delta'], prior_logp, y['x'],
                                res.nfe, res.steps, res.nonfinite_at)

    sharded = jax.shard_map(body, mesh=mesh, in_specs=(P(), P(DATA_AXIS), P(), P()),
                            out_specs=LikelihoodResult(*(P(DATA_AXIS),) * 7),
                            check_vma=False)
    return Likelihood(jax.jit(sharded), (batch_size, *image_shape))


class Likelihood:
    """A compiled likelihood program: ``compile(variables)`` once (timed), then
    ``run(variables, x, seed, offset)`` per round."""

    def __init__(self, jitted, shape: tuple[int, ...]):
        self.jitted, self.shape = jitted, shape
        self._compiled = None
        self.compile_seconds = 0.0

    @staticmethod
    def _scalars(seed, offset):
        return jnp.asarray(seed, jnp.uint32), jnp.asarray(offset, jnp.int32)

    def compile(self, variables, x_sharding=None) -> float:
        t0 = time.perf_counter()
        x = jax.ShapeDtypeStruct(self.shape, jnp.float32, sharding=x_sharding)
        self._compiled = self.jitted.lower(variables, x, *self._scalars(0, 0)).compile()
        self.compile_seconds = time.perf_counter() - t0
        return self.compile_seconds

    def run(self, variables, x, seed: int, offset: int = 0) -> LikelihoodResult:
        if self._compiled is None:
            return self.jitted(variables, x, *self._scalars(seed, offset))
        return self._compiled(variables, x, *self._scalars(seed, offset))
