"""Turn a network into a model function and a score function s(x, t) ~ grad_x log p_t(x).

Conventions (score_sde's):

* VE SDE: the network outputs the score directly (NCSN++ divides by sigma itself when
  ``scale_by_sigma``). Continuous models get ``labels = sigma(t)`` (the marginal std);
  discrete models get the ladder index ``round((T - t) (N - 1))`` (index 0 = sigma_max).
* VP / subVP SDE: the network predicts the noise eps, and score = -eps / std(t).
  Continuous models (and every subVP model) get ``labels = 999 t`` and std = marginal std;
  discrete VP models get ``labels = (N - 1) t`` and std = sqrt(1 - alphabar[int(labels)]) of the
  DDPM ladder.

``t`` has shape (B,), ``x`` is NHWC (B, H, W, C); the score has the shape of ``x``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pds.method import sde as sde_lib
from pds.method.sde import bcast

ModelFn = Callable[..., jax.Array]
ScoreFn = Callable[..., jax.Array]


def get_model_fn(model: nn.Module, variables: dict[str, Any], train: bool = False) -> ModelFn:
    """Return ``model_fn(x, labels, rng=None) -> output`` (NHWC, float32).

    ``train=True`` enables dropout; ``rng`` then seeds the 'dropout' stream.
    """

    def model_fn(x: jax.Array, labels: jax.Array, rng: jax.Array | None = None) -> jax.Array:
        rngs = {'dropout': rng} if (train and rng is not None) else None
        return model.apply(variables, x, labels, train=train, rngs=rngs)

    return model_fn


def get_score_fn(sde: Any, model: nn.Module, variables: dict[str, Any], train: bool = False,
                 continuous: bool = True) -> ScoreFn:
    """Return ``score_fn(x, t, rng=None) -> score`` for ``sde`` (a pds.method.sde VESDE,
    VPSDE or subVPSDE)."""
    model_fn = get_model_fn(model, variables, train=train)

    if isinstance(sde, sde_lib.VPSDE):  # includes subVPSDE (a VPSDE subclass)
        use_continuous = continuous or isinstance(sde, sde_lib.subVPSDE)

        def vp_score_fn(x: jax.Array, t: jax.Array, rng: jax.Array | None = None) -> jax.Array:
            if use_continuous:
                labels = t * 999
                std = sde.marginal_prob(jnp.zeros_like(x), t)[1]
            else:
                labels = t * (sde.N - 1)
                std = jnp.sqrt(1.0 - sde.alphas_cumprod)[labels.astype(jnp.int32)]
            eps = model_fn(x, labels, rng)
            return -eps / bcast(std, x)

        return vp_score_fn

    if isinstance(sde, sde_lib.VESDE):

        def ve_score_fn(x: jax.Array, t: jax.Array, rng: jax.Array | None = None) -> jax.Array:
            if continuous:
                labels = sde.marginal_prob(jnp.zeros_like(x), t)[1]
            else:
                labels = jnp.round((sde.T - t) * (sde.N - 1)).astype(jnp.int32)
            return model_fn(x, labels, rng)

        return ve_score_fn

    raise NotImplementedError(f'SDE class {type(sde).__name__} not supported')
