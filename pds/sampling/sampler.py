"""The predictor-corrector sampler: one ``lax.scan`` over the time grid in one ``jax.jit``,
the batch sharded over the device mesh with ``shard_map`` and the parameters replicated.

Reproducibility: example b of the run (global index = offset + position in the global batch)
draws all its noise from key(seed) folded with b, then with the iteration and the slot, so a
seed gives the same samples on 1 or N devices. The corrector's batch means gather the
per-example norms of the whole batch in global order before averaging, so they are
bit-identical across device counts as well.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from pds.method.precondition import Preconditioner, apply_noise
from pds.method.sde import SDE, subVPSDE
from pds.runtime.errors import ConfigError
from pds.runtime.mesh import DATA_AXIS, check_batch
from pds.sampling.context import StepEnv
from pds.sampling.correctors import get_corrector
from pds.sampling.grid import TimeGrid
from pds.sampling.predictors import get_predictor

Array = jnp.ndarray
ScoreBuilder = Callable[[SDE, Any], Callable[[Array, Array], Array]]

PRIOR_TAG = 0  # fold_in tag of the prior draw; iteration i uses tag i + 1


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    predictor: str = 'reverse_diffusion'
    corrector: str = 'langevin'
    snr: float = 0.16
    n_steps_each: int = 1
    probability_flow: bool = False
    noise_removal: bool = True

    def nfe_per_iteration(self) -> int:
        return (self.predictor != 'none') + self.n_steps_each * (self.corrector != 'none')


def spec_from_config(config, sde: SDE) -> SamplerSpec:
    s = config.sampling
    if s.method != 'pc':
        raise ConfigError('sampling.method', s.method, "allowed: 'pc'")
    get_predictor(s.predictor)
    get_corrector(s.corrector)
    if s.predictor == 'ancestral_sampling' and isinstance(sde, subVPSDE):
        raise ConfigError('sampling.predictor', s.predictor,
                          'training.sde vesde or vpsde (no ancestral step for subvpsde)')
    if not isinstance(s.n_steps_each, int) or s.n_steps_each < 1:
        raise ConfigError('sampling.n_steps_each', s.n_steps_each, 'an integer >= 1')
    if not isinstance(s.snr, int | float) or not s.snr > 0:
        raise ConfigError('sampling.snr', s.snr, 'a number > 0')
    return SamplerSpec(s.predictor, s.corrector, float(s.snr), int(s.n_steps_each),
                       bool(s.probability_flow), bool(s.noise_removal))


def example_keys(seed: Array, global_index: Array) -> Array:
    """One key per example: key(seed) folded with its global index."""
    return jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(seed), global_index)


def draw(keys: Array, shape: tuple[int, ...], *tags: Array) -> Array:
    """A standard normal (B, *shape) draw, each example from its key folded with ``tags``."""

    def one(k):
        for tag in tags:
            k = jax.random.fold_in(k, tag)
        return jax.random.normal(k, shape, jnp.float32)

    return jax.vmap(one)(keys)


def build_sampler(sde: SDE, grid: TimeGrid, score_builder: ScoreBuilder,
                  image_shape: tuple[int, int, int], batch_size: int, mesh: Mesh,
                  spec: SamplerSpec, progress: Callable[[int], None] | None = None,
                  progress_every: int = 0) -> Sampler:
    """The sampler ``sample(variables, precond, seed, offset) -> x_0`` of shape
    (batch_size, H, W, C), sharded over ``mesh`` on the batch axis. ``offset`` is the global
    index of the first example (round k of size B uses offset k B)."""
    local_b = check_batch('eval.batch_size', batch_size, mesh)
    predictor, corrector = get_predictor(spec.predictor), get_corrector(spec.corrector)
    n = grid.num_steps
    every = progress_every if progress_every > 0 else max(1, n // 50)
    t_grid, index_grid = jnp.asarray(grid.t), jnp.asarray(grid.index)

    def batch_mean(v):
        return jnp.mean(jax.lax.all_gather(v, DATA_AXIS, tiled=True))

    def report(i):
        jax.debug.callback(lambda k: progress(int(k)), i + 1)

    def body(variables, precond: Preconditioner, seed, offset):
        device = jax.lax.axis_index(DATA_AXIS)
        gidx = offset + device * local_b + jnp.arange(local_b)
        keys = example_keys(seed, gidx)
        env = StepEnv(sde, score_builder(sde, variables), precond, spec.snr, spec.n_steps_each,
                      spec.probability_flow, batch_mean)
        x = sde.prior_sampling(apply_noise(precond, draw(keys, image_shape, PRIOR_TAG)))

        def step(carry, inp):
            x, _ = carry
            t, index, i = inp
            vec_t = jnp.full((local_b,), t, jnp.float32)
            tag = i + 1
            c_noise = lambda slot: draw(keys, image_shape, tag, slot)
            p_noise = lambda slot: draw(keys, image_shape, tag, spec.n_steps_each + slot)
            x, x_mean = corrector(env, x, vec_t, index, c_noise)
            x, x_mean = predictor(env, x, vec_t, index, p_noise)
            if progress is not None:
                due = (device == 0) & (((i + 1) % every == 0) | (i + 1 == n))
                jax.lax.cond(due, lambda: report(i), lambda: None)
            return (x, x_mean), None

        (x, x_mean), _ = jax.lax.scan(step, (x, x), (t_grid, index_grid, jnp.arange(n)))
        return x_mean if spec.noise_removal else x

    sharded = jax.shard_map(body, mesh=mesh, in_specs=(P(), P(), P(), P()),
                            out_specs=P(DATA_AXIS), check_vma=False)
    return Sampler(jax.jit(sharded), n * spec.nfe_per_iteration())


class Sampler:
    """A compiled sampler: ``compile(variables, precond)`` once (ahead of time, timed), then
    ``sampler(variables, precond, seed, offset)`` per round."""

    def __init__(self, jitted, nfe: int):
        self.jitted, self.nfe = jitted, nfe
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

    def __call__(self, variables, precond: Preconditioner, seed: int, offset: int = 0):
        if self._compiled is None:
            self.compile(variables, precond)
        return self._compiled(variables, precond, *self._scalars(seed, offset))


def to_uint8(x: np.ndarray, centered: bool) -> np.ndarray:
    """score_sde's image convention: [0, 1] (or [-1, 1] if centered) -> clip(255 x) as uint8."""
    x = (np.asarray(x, np.float32) + 1.0) / 2.0 if centered else np.asarray(x, np.float32)
    return np.clip(x * 255.0, 0, 255).astype(np.uint8)
