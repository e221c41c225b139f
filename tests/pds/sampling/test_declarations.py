"""The solvers' declarations against what the solvers do: every fixed-step solver's declared
NFE(N) is the count its loop makes, every policy matches the configuration checks, and the
lists derived from the declarations (corrected methods, moments gates, bench presets, config
blocks) hold each registered solver. Parametrised over the registry, so a new solver is
checked without editing this file."""

import jax
import jax.numpy as jnp
import pytest

from configs.analytic import field_16
from pds.analytic.gaussian_field import GaussianField, exact_score_fn
from pds.analytic.moments import check_config
from pds.method.precondition import Identity
from pds.quality.samplers import presets
from pds.runtime.errors import ConfigError
from pds.sampling.context import Context
from pds.sampling.declaration import declared_config_blocks
from pds.sampling.grid import sampling_schedule
from pds.sampling.loops import scan_loop
from pds.sampling.noise import example_keys
from pds.sampling.solver import (
    corrected_methods,
    solver_config_blocks,
    solver_from_config,
    solver_names,
    solver_specs,
)

FIXED = [spec for spec in solver_specs() if not spec.adaptive]
SHAPE = (4, 4, 3)


def config_for(spec, steps: int = 3, precondition: str = 'none', variant: str = 'ours'):
    config = field_16.get_config()
    s = config.sampling
    s.method, s.grid, s.steps, s.precondition = spec.name, spec.grid, steps, precondition
    s.solver_variant = variant
    return config


def loop_nfe(spec, steps: int, variant: str = 'ours') -> int:
    config = config_for(spec, steps, variant=variant)
    sde, grid = sampling_schedule(config)
    solver = solver_from_config(config, sde)
    score = exact_score_fn(sde, GaussianField().variables(*SHAPE[:2]))
    ctx = Context(sde, score, Identity(), example_keys(jnp.uint32(0), jnp.arange(1)), SHAPE,
                  jnp.mean, jnp.any)
    x = jnp.ones((1, *SHAPE), jnp.float32)
    return int(jax.jit(lambda x: scan_loop(solver, ctx, grid, x))(x).nfe[0])


@pytest.mark.parametrize('spec', FIXED, ids=lambda spec: spec.name)
def test_declared_nfe_is_what_the_loop_counts(spec):
    s = config_for(spec).sampling
    for steps in (2, 5):
        assert loop_nfe(spec, steps) == spec.nfe_of(s, steps), steps
    s = config_for(spec, variant='reference').sampling
    if spec.nfe(s) != spec.nfe(config_for(spec).sampling):  # a variant with its own count
        for steps in (4, 6):
            assert loop_nfe(spec, steps, 'reference') == spec.nfe_of(s, steps), steps


@pytest.mark.parametrize('spec', solver_specs(), ids=lambda spec: spec.name)
def test_preconditioner_policy_is_the_configuration_rule(spec):
    config = config_for(spec, precondition='pds')
    sde = sampling_schedule(config)[0]
    if spec.name == 'adaptive_sde':  # PDS enters it in the invariant form only
        config.sampling.pds.predictor_form = 'invariant'
    if spec.preconditioner == 'sde':
        solver_from_config(config, sde)
    else:
        with pytest.raises(ConfigError) as err:
            solver_from_config(config, sde)
        assert err.value.field == 'sampling.precondition'
    config.sampling.ode_corrector = 'langevin'
    if spec.corrected:  # M may then go to the corrector
        solver_from_config(config, sde)
    else:
        with pytest.raises(ConfigError) as err:
            solver_from_config(config, sde)
        assert err.value.field == 'sampling.ode_corrector'


@pytest.mark.parametrize('spec', solver_specs(), ids=lambda spec: spec.name)
def test_moments_gate_follows_the_declared_engine(spec):
    config = config_for(spec)
    if spec.moments == 'none':
        with pytest.raises(ConfigError) as err:
            check_config(config)
        assert err.value.field == 'sampling.method'
    else:
        check_config(config)


def test_derived_lists_hold_every_solver():
    names = solver_names()
    assert set(corrected_methods()) == {s.name for s in solver_specs() if s.corrected}
    table = presets()
    assert set(names) <= set(table)
    for name in names:
        assert table[name].spec.name == name and table[name].fields['grid'] == table[
            name].spec.grid
    extra = set(table) - set(names)
    assert extra == {f'{s.name}_{x}' for s in solver_specs() for x in s.bench_pds}
    blocks = solver_config_blocks()
    assert declared_config_blocks() == blocks  # what configs read from source, no import
    config = field_16.get_config()
    for block, fields in blocks.items():
        assert set(config.sampling[block].keys()) == set(fields)


def test_the_preset_ladder_is_the_largest_n_within_each_budget():
    for spec in FIXED:
        s = config_for(spec).sampling
        for budget in (7, 20, 66):
            n = spec.steps_within(s, budget)
            assert spec.nfe_of(s, n) <= budget < spec.nfe_of(s, n + 1), (spec.name, budget)
