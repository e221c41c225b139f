"""Fixtures of the sampling tests."""

import jax
import pytest


@pytest.fixture
def x64():
    """float64 for the duration of a test (order and exactness checks whose truncation error
    must stand far above rounding)."""
    jax.config.update('jax_enable_x64', True)
    yield
    jax.config.update('jax_enable_x64', False)
