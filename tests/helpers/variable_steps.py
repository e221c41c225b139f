"""A test solver for the while loop: example b takes 2 + (its prior draw's sign pattern) steps
of x <- x + h s(x, t) at a fixed t, then is done. Its per-example step count depends only on
the example, so results and NFE must not depend on the batch split or the device count."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class VariableSteps:
    h: float = 0.1
    t: float = 0.5

    def target(self, x):
        """2, 3 or 4 steps, from the example's own prior draw."""
        return 2 + (jnp.sum(x > 0, axis=(1, 2, 3)) % 3).astype(jnp.int32)

    def init(self, ctx, x):
        return {'x': x, 'taken': jnp.zeros((x.shape[0],), jnp.int32), 'target': self.target(x)}

    def step(self, ctx, state, interval):
        x = state['x'] + self.h * ctx.score_fn(state['x'], ctx.times(self.t))
        return {'x': x, 'taken': state['taken'] + 1, 'target': state['target']}

    def done(self, ctx, state):
        return state['taken'] >= state['target']

    def output(self, ctx, state):
        return state['x']

    def max_steps(self, grid) -> int:
        return 10

    def summary(self):
        return {'method': 'variable_steps'}
