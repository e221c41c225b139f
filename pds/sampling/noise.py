"""Per-example random streams: the noise of example b never depends on the batch split.

Example b of a run (its global index across rounds and devices) draws all of its noise from
key(seed) folded with b, then with a tag (0 for the prior, i + 1 for iteration i), then with a
slot (the k-th draw within the iteration). So a seed gives the same samples on 1 or N devices
and in rounds of any size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jnp.ndarray

PRIOR_TAG = 0  # fold_in tag of the prior draw; iteration i uses tag i + 1


def example_keys(seed: Array, global_index: Array) -> Array:
    """One key per example: key(seed) folded with its global index; shape (B,)."""
    return jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(seed), global_index)


def draw(keys: Array, shape: tuple[int, ...], *tags: Array) -> Array:
    """A standard normal (B, *shape) draw, each example from its key folded with ``tags``."""

    def one(k):
        for tag in tags:
            k = jax.random.fold_in(k, tag)
        return jax.random.normal(k, shape, jnp.float32)

    return jax.vmap(one)(keys)


def rademacher(keys: Array, shape: tuple[int, ...], *tags: Array) -> Array:
    """A Rademacher (+-1 with probability 1/2 each) (B, *shape) float32 draw, each example
    from its key folded with ``tags`` (as :func:`draw`)."""

    def one(k):
        for tag in tags:
            k = jax.random.fold_in(k, tag)
        return jax.random.rademacher(k, shape, jnp.float32)

    return jax.vmap(one)(keys)
