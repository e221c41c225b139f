"""The divergence of the probability-flow drift, exactly or by the Hutchinson-Skilling trace
estimator.

For v: R^D -> R^D (one example's drift at fixed t) with Jacobian J = dv/dx,

- exact: div v = sum_i (J e_i)_i, one Jacobian-vector product (JVP) per dimension i, the
  basis vectors batched by ``vmap`` in chunks of ``EXACT_CHUNK`` (``lax.map``): D JVPs per
  evaluation, for small images and tests;
- Hutchinson (Hutchinson 1990; Skilling 1989; as score_sde and FFJORD): div v ~ mean_p
  e_p^T J e_p over ``num_probes`` probes e_p with E[e e^T] = I, Rademacher (+-1) or
  standard Gaussian; one JVP per probe per evaluation. The probes of an example are drawn
  once from its key and held fixed along its trajectory, so the estimate of the integral
  int div v dt is unbiased (the ODE is solved for one fixed trace estimator).

Each example's estimate depends only on its own x, t and probes (the drift acts per
example), never on the batch it shares.
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
# basis vectors per vmapped chunk of the exact divergence: fixed, so that an example's
# numbers do not depend on the local batch (the device count)
EXACT_CHUNK = 64


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


def exact_divergence(fn: Drift, x: Array, chunk: int = EXACT_CHUNK) -> tuple[Array, Array]:
    """(v(x), sum_i (J e_i)_i per example): one JVP per dimension i, with the tangent e_i in
    every example at once (the examples are independent, so row b of J e_i is example b's)."""
    b, shape = x.shape[0], x.shape[1:]
    d = math.prod(shape)

    def diagonal_entry(i):
        tangent = jnp.broadcast_to(jax.nn.one_hot(i, d, dtype=x.dtype).reshape(shape), x.shape)
        jv = jax.jvp(fn, (x,), (tangent,))[1]
        return jnp.take(jv.reshape(b, d), i, axis=1)

    diag = jax.lax.map(diagonal_entry, jnp.arange(d), batch_size=min(chunk, d))  # (D, B)
    return fn(x), jnp.sum(diag.T, axis=1)


def hutchinson_divergence(fn: Drift, x: Array, probes: Array) -> tuple[Array, Array]:
    """(v(x), mean_p e_p^T J e_p per example), probes (B, P, H, W, C)."""
    b = x.shape[0]

    def quadratic_form(e):
        v, jv = jax.jvp(fn, (x,), (e,))
        return v, jnp.sum((jv * e).reshape(b, -1), axis=1)

    v, est = jax.vmap(quadratic_form, in_axes=1, out_axes=(None, 1))(probes)  # est (B, P)
    return v, jnp.mean(est, axis=1)
