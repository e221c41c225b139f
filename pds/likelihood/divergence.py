"""The divergence of the probability-flow drift, exactly or by the Hutchinson-Skilling trace
estimator.

For v: R^D -> R^D (one example's drift at fixed t) with Jacobian J = dv/dx,

- exact: div v = sum_i (J e_i)_i, one Jacobian-vector product (JVP) per dimension i (a
  ``lax.scan`` over i, each JVP over the whole batch): D JVPs per evaluation, for small
  images and tests;
- Hutchinson (Hutchinson 1990; Skilling 1989; as score_sde and FFJORD): div v ~ mean_p
  e_p^T J e_p over ``num_probes`` probes e_p with E[e e^T] = I, Rademacher (+-1) or
  standard Gaussian; one JVP per probe per evaluation. The probes of an example are drawn
  once from its key and held fixed along its trajectory, so the estimate of the integral
  int div v dt is unbiased (the ODE is solved for one fixed trace estimator).

Each example's estimate depends only on its own x, t and probes (the drift acts per
example), never on the batch it shares. The JVPs run one after another, each over the batch
as the drift itself runs, not vectorised over tangents: a ``vmap`` over tangents gives XLA
programs whose float rounding depends on the local batch (for the mixture's score), which
would make an example's numbers depend on the device count.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from pds.runtime.errors import ConfigError
from pds.sampling.noise import draw, rademacher

Array = jnp.ndarray
Drift = Callable[[Array], Array]  # x (B, H, W, C) -> v (B, H, W, C) at a fixed time

PROBES = ('rademacher', 'gaussian')
PROBE_TAG = 0  # fold_in tag of the probes in each example's stream


@dataclasses.dataclass(frozen=True)
class Divergence:
    """How div v is computed: ``num_probes`` 0 is exact, else Hutchinson with ``probe``
    ('rademacher' or 'gaussian') probes."""

    num_probes: int = 0
    probe: str = 'rademacher'

    def __post_init__(self):
        n = self.num_probes
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError('eval.bpd_num_probes', n, 'an integer >= 0 (0: the exact '
                              'divergence, one JVP per dimension; k: Hutchinson with k '
                              'probes)')
        if self.probe not in PROBES:
            raise ConfigError('eval.bpd_probe', self.probe,
                              ' or '.join(repr(p) for p in PROBES))

    @property
    def exact(self) -> bool:
        return self.num_probes == 0

    def probes(self, keys: Array, image_shape: tuple[int, int, int]) -> Array | None:
        """(B, num_probes, H, W, C) probes from each example's key; None when exact."""
        if self.exact:
            return None
        shape = (self.num_probes, *image_shape)
        if self.probe == 'gaussian':
            return draw(keys, shape, PROBE_TAG)
        return rademacher(keys, shape, PROBE_TAG)

    def __call__(self, fn: Drift, x: Array, probes: Array | None) -> tuple[Array, Array]:
        """(v(x), div v(x) (B,)): exact or estimated with ``probes``."""
        if probes is None:
            return exact_divergence(fn, x)
        return hutchinson_divergence(fn, x, probes)

    def jvps(self, dims: int) -> int:
        """JVPs per evaluation: D exact, else one per probe."""
        return dims if self.exact else self.num_probes

    def summary(self) -> dict:
        if self.exact:
            return {'divergence': 'exact'}
        return {'divergence': 'hutchinson', 'num_probes': self.num_probes,
                'probe': self.probe}


def exact_divergence(fn: Drift, x: Array) -> tuple[Array, Array]:
    """(v(x), sum_i (J e_i)_i per example): one JVP per dimension i, with the tangent e_i in
    every example at once (the examples are independent, so row b of J e_i is example b's),
    accumulated in order of i."""
    b, shape = x.shape[0], x.shape[1:]
    d = math.prod(shape)

    def add_entry(acc, i):
        tangent = jnp.broadcast_to(jax.nn.one_hot(i, d, dtype=x.dtype).reshape(shape), x.shape)
        jv = jax.jvp(fn, (x,), (tangent,))[1]
        return acc + jnp.take(jv.reshape(b, d), i, axis=1), None

    div, _ = jax.lax.scan(add_entry, jnp.zeros((b,), x.dtype), jnp.arange(d))
    return drift_alone(fn, x), div


def hutchinson_divergence(fn: Drift, x: Array, probes: Array) -> tuple[Array, Array]:
    """(v(x), mean_p e_p^T J e_p per example), probes (B, P, H, W, C), accumulated in order
    of p."""
    b, num = x.shape[0], probes.shape[1]

    def add_probe(acc, e):
        jv = jax.jvp(fn, (x,), (e,))[1]
        return acc + jnp.sum((jv * e).reshape(b, -1), axis=1), None

    total, _ = jax.lax.scan(add_probe, jnp.zeros((b,), x.dtype), jnp.moveaxis(probes, 1, 0))
    return drift_alone(fn, x), total / num


def drift_alone(fn: Drift, x: Array) -> Array:
    """fn(x) computed apart from the JVPs' primal parts (an optimisation barrier keeps XLA
    from merging them, which changes the drift's float rounding with the batch size)."""
    return fn(jax.lax.optimization_barrier(x))
