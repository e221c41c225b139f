"""Registry of score networks, and helpers to build and initialise them from a config.

Every network is a flax.linen Module with a single field ``config`` (the experiment
ConfigDict) and the call signature of score_sde:
``model.apply(variables, x, labels, train=False, rngs={'dropout': key})`` with ``x`` NHWC
float32 of shape (B, H, W, C) and ``labels`` of shape (B,).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

_MODELS: dict[str, type[nn.Module]] = {}


def register_model(name: str | None = None) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator registering a network under ``name`` (default: the class name)."""

    def register(cls: type[nn.Module]) -> type[nn.Module]:
        key = cls.__name__ if name is None else name
        if key in _MODELS and _MODELS[key] is not cls:
            raise ValueError(f'a model named {key!r} is already registered')
        _MODELS[key] = cls
        return cls

    return register


def _ensure_builtin_models() -> None:
    # Importing the package registers ncsnpp, ddpm and the ncsnv2 variants.
    import models  # noqa: F401


def get_model(name: str) -> type[nn.Module]:
    """The registered network class called ``name``."""
    _ensure_builtin_models()
    if name not in _MODELS:
        raise KeyError(f'unknown model {name!r}; registered: {sorted(_MODELS)}')
    return _MODELS[name]


def registered_models() -> list[str]:
    """Names of all registered networks, sorted."""
    _ensure_builtin_models()
    return sorted(_MODELS)


def create_model(config: ml_collections.ConfigDict) -> nn.Module:
    """Build the network named by ``config.model.name`` (reads config.model and config.data)."""
    return get_model(config.model.name)(config=config)


def dummy_inputs(config: ml_collections.ConfigDict, batch_size: int = 1
                 ) -> tuple[jax.Array, jax.Array]:
    """Zero images (B, H, W, C) float32 and unit labels (B,) float32 used for initialisation."""
    size = config.data.image_size
    x = jnp.zeros((batch_size, size, size, config.data.num_channels), jnp.float32)
    labels = jnp.ones((batch_size,), jnp.float32)
    return x, labels


def init_variables(config: ml_collections.ConfigDict, rng: jax.Array) -> dict[str, Any]:
    """Initialise the network of ``config``: ``{'params': ...}`` plus any state collections."""
    model = create_model(config)
    x, labels = dummy_inputs(config)

    @jax.jit
    def init(rng):
        params_rng, dropout_rng = jax.random.split(rng)
        return model.init({'params': params_rng, 'dropout': dropout_rng}, x, labels, train=False)

    return dict(init(rng))


def abstract_variables(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Shapes and dtypes (``jax.ShapeDtypeStruct``) of the variables, without computing them."""
    return jax.eval_shape(lambda key: init_variables(config, key), jax.random.PRNGKey(0))


def param_count(tree: Any) -> int:
    """Total number of scalars in a pytree of arrays or ``ShapeDtypeStruct``s."""
    return int(sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree)))
