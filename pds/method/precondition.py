"""The preconditioner protocol: what a sampler needs of a fixed linear map M.

A preconditioner is a pytree (a ``flax.struct`` dataclass) passed into the compiled sampler,
with two methods on NHWC batches:

    noise(z)  = M z           (scales the injected Gaussian noise)
    drift(g)  = M M^T g       (scales the score term)

Preconditioned Langevin dynamics dx = M M^T grad log p dt + sqrt(2) M dW keeps p stationary
for any invertible M. A family registers a builder under its ``sampling.precondition`` name::

    @register_preconditioner('name')
    def build(config, image_shape, images) -> Preconditioner: ...

where ``images(n)`` returns n training images (N, H, W, C) in [0, 1] for statistics. A new
family is one file plus its import in :func:`_register_families`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from flax import struct
from jax import numpy as jnp

from pds.runtime.registry import Registry

Array = jnp.ndarray
ImageSource = Callable[[int], np.ndarray]


class Preconditioner(Protocol):
    def noise(self, z: Array) -> Array:
        """M z."""

    def drift(self, g: Array) -> Array:
        """M M^T g."""


@struct.dataclass
class Identity:
    """M = I: the plain sampler."""

    def noise(self, z: Array) -> Array:
        return z

    def drift(self, g: Array) -> Array:
        return g


_REGISTRY = Registry('sampling.precondition')
register_preconditioner = _REGISTRY.register


@register_preconditioner('none')
def _identity(config, image_shape: tuple[int, int, int], images: ImageSource) -> Identity:
    return Identity()


def _register_families() -> None:
    from pds.method import pds_preconditioner  # noqa: F401  (registers 'pds')


def preconditioner_names() -> tuple[str, ...]:
    _register_families()
    return _REGISTRY.names()


def preconditioner_from_config(config, image_shape: tuple[int, int, int],
                               images: ImageSource) -> Preconditioner:
    """M of ``sampling.precondition`` (a ConfigError names the field for unknown names)."""
    _register_families()
    return _REGISTRY.get(config.sampling.precondition)(config, image_shape, images)
