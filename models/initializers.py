"""Weight initialisers of score_sde's networks.

* ``default_init(scale)``: the DDPM initialiser, variance scaling with fan_avg and a uniform
  distribution, Var = scale / fan_avg; a scale of 0 is replaced by 1e-10 (near-zero init of
  output layers).
* ``ncsn_kernel_init(scale)``: the PyTorch-style initialiser used by NCSN/NCSNv2 convs,
  variance scaling ``scale / 3`` with fan_in, uniform, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))
  for scale 1.
* ``ncsn_bias_init(kernel_init, kernel_shape)``: the bias drawn from the same distribution as
  the kernel (first output row of a freshly drawn kernel), as PyTorch does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


def _nonzero(scale: float) -> float:
    return 1e-10 if scale == 0 else scale


def default_init(scale: float = 1.0) -> Initializer:
    """DDPM initialiser: variance_scaling(scale, 'fan_avg', 'uniform')."""
    return jax.nn.initializers.variance_scaling(_nonzero(scale), 'fan_avg', 'uniform')


def ncsn_kernel_init(scale: float = 1.0) -> Initializer:
    """NCSN initialiser: variance_scaling(scale / 3, 'fan_in', 'uniform')."""
    return jax.nn.initializers.variance_scaling(_nonzero(scale) / 3.0, 'fan_in', 'uniform')


def ncsn_bias_init(kernel_init: Initializer, kernel_shape: Sequence[int]) -> Initializer:
    """Bias initialiser sampling like ``kernel_init`` for a kernel of ``kernel_shape``."""

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        draw = kernel_init(key, tuple(kernel_shape), dtype)
        return draw.reshape(-1, kernel_shape[-1])[0]

    return init
