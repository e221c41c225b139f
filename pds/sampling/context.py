"""What one predictor or corrector step sees: the SDE, the score, the preconditioner, the batch.

Steps are pure functions ``step(env, x, t, index, noise) -> (x, x_mean)`` with x NHWC (the
local shard of the batch), t (B,) the continuous time, ``index`` the scalar ladder index and
``noise(slot)`` the slot-th standard normal draw of this iteration, one per example.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp

from pds.method.precondition import Preconditioner, apply_drift, apply_noise
from pds.method.sde import SDE, VPSDE, ReverseSDE

Array = jnp.ndarray
NoiseFn = Callable[[int], Array]


@dataclasses.dataclass(frozen=True)
class StepEnv:
    sde: SDE
    score_fn: Callable[[Array, Array], Array]
    precond: Preconditioner
    snr: float
    n_steps: int
    probability_flow: bool
    batch_mean: Callable[[Array], Array]  # (B_local,) -> scalar mean over the GLOBAL batch

    @property
    def reverse(self) -> ReverseSDE:
        return self.sde.reverse(self.score_fn, self.probability_flow)

    def drift(self, g: Array) -> Array:
        """M M^T g."""
        return apply_drift(self.precond, g)

    def noise_term(self, z: Array) -> Array:
        """M z."""
        return apply_noise(self.precond, z)

    def langevin_alpha(self, index: Array) -> Array:
        """a_t of the corrector step size: alphas[i] for VP / subVP, 1 for VE."""
        if isinstance(self.sde, VPSDE):
            return self.sde.alphas[index]
        return jnp.ones((), jnp.float32)


def per_example_norm(x: Array) -> Array:
    """||x_b||_2 over all pixels and channels, shape (B,)."""
    return jnp.sqrt(jnp.sum(jnp.square(x), axis=tuple(range(1, x.ndim))))


def bcast(v: Array, x: Array) -> Array:
    v = jnp.asarray(v)
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))
