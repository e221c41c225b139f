"""What a solver step sees besides its own state: the SDE, the score, the preconditioner, the
examples' random streams and the batch collectives.

Inside the sharded sampler x is the local shard (B_local, H, W, C) of the global batch; the
collectives reduce over the GLOBAL batch in global order, so results do not depend on the
device count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp

from pds.method.precondition import Preconditioner
from pds.method.sde import SDE, VPSDE, ReverseSDE
from pds.sampling.grid import Interval
from pds.sampling.noise import draw

Array = jnp.ndarray
ScoreFn = Callable[[Array, Array], Array]


@dataclasses.dataclass(frozen=True)
class Context:
    sde: SDE
    score_fn: ScoreFn  # s(x, t) ~ grad_x log p_t(x); x (B, H, W, C), t (B,)
    precond: Preconditioner
    keys: Array  # (B_local,) per-example keys (pds.sampling.noise)
    image_shape: tuple[int, int, int]  # (H, W, C)
    batch_mean: Callable[[Array], Array]  # (B_local,) -> scalar mean over the global batch
    batch_any: Callable[[Array], Array]  # (B_local,) bool -> scalar: any over the global batch
    # noise_fn(interval, slot) replaces the random draws (pds.analytic.moments probes a step
    # with chosen noise rows); None: each example's own stream
    noise_fn: Callable[[Interval, int], Array] | None = None

    @property
    def local_batch(self) -> int:
        return int(self.keys.shape[0])

    def noise(self, interval: Interval, slot: int) -> Array:
        """The slot-th standard normal draw of this iteration, one per example."""
        if self.noise_fn is not None:
            return self.noise_fn(interval, slot)
        return draw(self.keys, self.image_shape, interval.iteration + 1, slot)

    def times(self, t: Array) -> Array:
        """A scalar time as the per-example vector (B_local,) the score expects."""
        return jnp.full((self.local_batch,), t, jnp.float32)

    def counting(self) -> tuple[Context, list[None]]:
        """A copy whose score function appends to the returned list at every call: a loop
        traces a step once with it to count the step's score evaluations (NFE)."""
        calls: list[None] = []
        score = self.score_fn

        def counted(x, t):
            calls.append(None)
            return score(x, t)

        return dataclasses.replace(self, score_fn=counted), calls


@dataclasses.dataclass(frozen=True)
class StepEnv:
    """What one predictor or corrector step sees (the predictor-corrector solver's pieces):
    ``step(env, x, t, index, noise) -> (x, x_mean)`` with t (B,), ``index`` the ladder index
    and ``noise(slot)`` the slot-th standard normal draw of this iteration."""

    sde: SDE
    score_fn: ScoreFn
    precond: Preconditioner
    snr: float
    n_steps: int
    probability_flow: bool
    batch_mean: Callable[[Array], Array]
    predictor_form: str = 'reference'  # 'reference' or 'invariant' (pds.sampling.predictors)

    @property
    def reverse(self) -> ReverseSDE:
        return self.sde.reverse(self.score_fn, self.probability_flow)

    def drift(self, g: Array) -> Array:
        """M M^T g."""
        return self.precond.drift(g)

    def noise_term(self, z: Array) -> Array:
        """M z."""
        return self.precond.noise(z)

    def langevin_alpha(self, index: Array) -> Array:
        """a_t of the corrector step size: alphas[i] for VP / subVP, 1 for VE."""
        if isinstance(self.sde, VPSDE):
            return self.sde.alphas[index]
        return jnp.ones((), jnp.float32)


def per_example_norm(x: Array) -> Array:
    """||x_b||_2 over all pixels and channels, shape (B,)."""
    return jnp.sqrt(jnp.sum(jnp.square(x), axis=tuple(range(1, x.ndim))))
