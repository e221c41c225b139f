"""The suite's XLA settings (tests/conftest.py): legacy emitters in this process and in
``jax_env`` subprocesses, the default codegen in ``default_codegen`` tests and subprocesses."""

import os

import pytest

from tests.helpers.paths import DEFAULT_CODEGEN, LEGACY_EMITTERS, jax_env


def test_the_suite_compiles_with_the_legacy_emitters():
    assert LEGACY_EMITTERS in os.environ['XLA_FLAGS'].split()
    assert LEGACY_EMITTERS in jax_env(4)['XLA_FLAGS'].split()
    default = jax_env(4, default_codegen=True)
    assert LEGACY_EMITTERS not in default['XLA_FLAGS'].split()
    assert default[DEFAULT_CODEGEN] == '1' and DEFAULT_CODEGEN not in jax_env()
    assert '--xla_force_host_platform_device_count=4' in default['XLA_FLAGS'].split()


@pytest.mark.default_codegen
def test_a_default_codegen_test_runs_without_them():
    assert os.environ.get(DEFAULT_CODEGEN) == '1'
    assert LEGACY_EMITTERS not in os.environ.get('XLA_FLAGS', '').split()
