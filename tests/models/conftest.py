"""Fixtures for the score-network tests: config loading and init-order capture."""

from __future__ import annotations

import importlib

import jax
import ml_collections
import pytest


def _load_config(name: str) -> ml_collections.ConfigDict:
    """``get_config()`` of ``configs/<name>.py`` (name like 've/cifar10_ncsnpp_continuous')."""
    return importlib.import_module('configs.' + name.replace('/', '.')).get_config()


def _init_order_and_shapes(config: ml_collections.ConfigDict) -> tuple[list[str], dict]:
    """Top-level parameter names in creation order, and the abstract variables of ``config``."""
    from models.registry import create_model, dummy_inputs

    model = create_model(config)
    order: list[list[str]] = []

    def init(key: jax.Array) -> dict:
        variables = model.init({'params': key, 'dropout': key}, *dummy_inputs(config),
                               train=False)
        order.append(list(variables['params'].keys()))
        return variables

    variables = jax.eval_shape(init, jax.random.PRNGKey(0))
    return order[0], variables


@pytest.fixture
def load_config():
    """Fixture: the config loader ``load_config(name)``."""
    return _load_config


@pytest.fixture
def init_order_and_shapes():
    """Fixture: ``init_order_and_shapes(config) -> (top-level names, abstract variables)``."""
    return _init_order_and_shapes
