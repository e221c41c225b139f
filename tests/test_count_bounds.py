"""Every count a config sets is bounded where it is derived (issue 29), and the remaining
field ranges are checked before any work: in-process through ``check_config`` (no jax work),
so that each bound is tried through the field that once bypassed it."""

from __future__ import annotations

import copy
import glob
import importlib
import json
import os

import pytest

from pds.experiment.config_checks import check_config, flat_fields
from pds.method import tuned_alpha, tuned_tables
from pds.runtime import bounds
from pds.runtime.errors import ConfigError
from tests.helpers.paths import ROOT

FIELD_16 = 'configs.analytic.field_16'
MODES = ('sample', 'bench', 'tune', 'train', 'eval', 'stats')


def config_of(module: str = FIELD_16, **fields):
    config = importlib.import_module(module).get_config()
    for name, value in fields.items():
        node = config
        *path, last = name.split('.')
        for part in path:
            node = node[part]
        with node.ignore_type():
            node[last] = value
    return config


def refused(config, field: str, mode: str = 'sample') -> str:
    with pytest.raises(ConfigError) as err:
        check_config(config, mode)
    assert err.value.field == field, str(err.value)
    assert '\n' not in str(err.value)
    return str(err.value)


def config_modules() -> list[str]:
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, 'configs', '**', '*.py'), recursive=True)):
        module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
        if hasattr(importlib.import_module(module), 'get_config'):
            out.append(module)
    return out


def _int_valued(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, tuple | list) and any(_int_valued(v) for v in value)


def test_every_integer_field_of_every_config_is_bounded_or_declared_no_count():
    """The walk: an integer field added to a config must be given a bound (COUNT_FIELDS) or
    a reason it sets no work or memory (NOT_COUNTS)."""
    seen = set()
    for module in config_modules():
        for name, value in flat_fields(importlib.import_module(module).get_config()).items():
            if _int_valued(value):
                seen.add(name)
    ladders_of_pairs = {'bench.spot_checks'}  # (iterations, alpha) pairs: checked below
    unlisted = seen - set(bounds.COUNT_FIELDS) - set(bounds.NOT_COUNTS) - ladders_of_pairs
    assert not unlisted, unlisted
    assert {'sampling.steps', 'training.n_iters', 'bench.nfe', 'tune.steps'} <= set(
        bounds.COUNT_FIELDS)


def test_every_config_passes_in_every_mode():
    for module in config_modules():
        for mode in MODES:
            check_config(config_of(module), mode)


@pytest.mark.parametrize('field', sorted(bounds.COUNT_FIELDS))
def test_each_count_field_is_refused_just_beyond_its_bounds(field):
    low, high, _ = bounds.COUNT_FIELDS[field]
    base = config_of('configs.tiny.ncsnpp_train')
    current = _get(base, field)
    for bad in (high + 1, low - 1):
        value = tuple([bad] * len(current)) if isinstance(current, tuple | list) else bad
        refused(config_of('configs.tiny.ncsnpp_train', **{field: value}), field, 'train')


def _get(config, name):
    node = config
    for part in name.split('.'):
        node = node[part]
    return node


# the counts of the issue, each through the field that bypassed the typed bound
DERIVED = [
    ({'sampling.speed_up': 1e-6}, 'sampling.speed_up', 'sample'),  # 1e9 iterations
    ({'sampling.speed_up': 0.005}, 'sampling.speed_up', 'sample'),  # 200,000 iterations
    ({'sampling.steps': 100_000, 'sampling.n_steps_each': 10}, 'sampling.steps', 'sample'),
    ({'tune.steps': (20, 2_000_000)}, 'tune.steps', 'tune'),
    ({'tune.steps': (20, 100_000), 'sampling.n_steps_each': 10}, 'tune.steps', 'tune'),
    ({'bench.steps': (20, 200_000)}, 'bench.steps', 'bench'),
    ({'bench.nfe': (20, 1_000_000)}, 'bench.nfe', 'bench'),
    ({'bench.spot_checks': ((2_000_000, 0.0),)}, 'bench.spot_checks', 'bench'),
    ({'training.n_iters': 2 ** 64 - 1}, 'training.n_iters', 'train'),
    ({'training.n_iters': 2 ** 31}, 'training.n_iters', 'train'),
    ({'sampling.adaptive.max_steps': 1_000_000}, 'sampling.adaptive.max_steps', 'sample'),
    ({'eval.batch_size': 3_000_000, 'data.image_size': 32}, 'eval.batch_size', 'sample'),
    ({'tune.alphas': tuple(2.0 + i for i in range(101))}, 'tune.alphas', 'tune'),
]


@pytest.mark.parametrize('fields,field,mode', DERIVED)
def test_derived_counts_are_bounded_through_the_field_that_sets_them(fields, field, mode):
    refused(config_of(**fields), field, mode)


def test_the_iteration_bound_is_exact():
    """N = int(num_scales / speed_up): 100,000 is allowed, 100,100 is not."""
    assert bounds.iterations(config_of(**{'sampling.speed_up': 0.01})) == 100_000
    assert bounds.iterations(config_of(**{'sampling.steps': 100_000})) == 100_000
    with pytest.raises(ConfigError, match=r'sampling\.speed_up'):
        bounds.iterations(config_of(**{'sampling.speed_up': 0.00999}))
    with pytest.raises(ConfigError, match=r'sampling\.steps'):
        bounds.iterations(config_of(**{'sampling.steps': 100_001}))


# the field probes: each ends as a ConfigError naming the field, before any work
FIELDS = [
    ({'eval.num_samples': 1, 'eval.batch_size': 1}, 'eval.num_samples', 'sample'),
    ({'bench.num_samples': 1}, 'bench.num_samples', 'bench'),
    ({'tune.num_samples': 1}, 'tune.num_samples', 'tune'),
    ({'model.sigma_min': 0.0}, 'model.sigma_min', 'sample'),
    ({'model.sigma_min': -1.0}, 'model.sigma_min', 'sample'),
    ({'model.sigma_min': 30.0}, 'model.sigma_max', 'sample'),  # sigma_min > sigma_max
    ({'model.sigma_max': -1.0}, 'model.sigma_max', 'sample'),
    ({'sampling.edm.s_noise': 1e30}, 'sampling.edm.s_noise', 'sample'),
    ({'sampling.edm.s_noise': 0.0}, 'sampling.edm.s_noise', 'sample'),
    ({'sampling.method': 'dopri5', 'sampling.adaptive.rtol': 1e-30,
      'sampling.adaptive.atol': 1e-30}, 'sampling.adaptive.rtol', 'sample'),
    ({'sampling.adaptive.atol': 1e-30}, 'sampling.adaptive.atol', 'sample'),
    ({'sampling.adaptive.eps_rel': 1e-30}, 'sampling.adaptive.eps_rel', 'sample'),
    ({'bench.rtols': (1e-2, 1e-12)}, 'bench.rtols', 'bench'),
]


@pytest.mark.parametrize('fields,field,mode', FIELDS)
def test_field_ranges_are_checked_before_any_work(fields, field, mode):
    refused(config_of(**fields), field, mode)


def test_vp_noise_range_is_the_beta_range():
    config = config_of('configs.vp.cifar10_ddpmpp_continuous', **{'model.beta_max': 0.05})
    refused(config, 'model.beta_max')
    # the VE fields do not matter to a VP run
    check_config(config_of('configs.vp.cifar10_ddpmpp_continuous',
                           **{'model.sigma_min': 0.0}), 'sample')


def test_a_karras_grid_that_is_not_finite_names_rho():
    from pds.sampling.grid import sampling_schedule

    for rho in (1e-300, 1e300):
        config = config_of(**{'sampling.grid': 'karras', 'sampling.rho': rho,
                              'sampling.steps': 10})
        with pytest.raises(ConfigError, match=r'sampling\.rho'):
            sampling_schedule(config)
    grid = sampling_schedule(config_of(**{'sampling.grid': 'karras', 'sampling.steps': 10}))[1]
    assert (grid.t[1:] < grid.t[:-1]).all()


# tuned tables: strict numbers, a size cap read before parsing, integer counts, settings


def write_table(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def table_text(config, **changes) -> str:
    table = {'steps': [20, 40], 'alpha': [3.0, 5.0],
             'sampler': tuned_tables.sampler_settings(config), **changes}
    return json.dumps(table)


@pytest.mark.parametrize('text,match', [
    ('{"steps": [20, 40], "alpha": [3.0, Infinity]}', 'Infinity is not a JSON number'),
    ('{"steps": [20, 40], "alpha": [3.0, NaN]}', 'NaN is not a JSON number'),
    ('{"steps": [20, 40], "alpha": [3.0, 1e400]}', '1e400 is not a finite float64'),
    ('{"steps": [20, 40], "alpha": [3.0, 1' + '0' * 400 + ']}', 'OverflowError'),
    ('[' * 100_000 + ']' * 100_000, 'RecursionError'),
    ('{"steps": [5.9, 40], "alpha": [3.0, 5.0]}', 'not all integers'),
    ('{"steps": [20, 200000], "alpha": [3.0, 5.0]}', 'increasing integer counts'),
    ('{"steps": [true, 40], "alpha": [3.0, 5.0]}', 'not all integers'),
])
def test_a_malformed_tuned_table_is_one_config_error(tmp_path, text, match):
    path = write_table(tmp_path / 'alpha.json', text)
    with pytest.raises(ConfigError, match=match) as err:
        tuned_alpha.read_table(path)
    assert err.value.field == 'sampling.pds.tuned' and '\n' not in str(err.value)


def test_a_huge_tuned_table_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / 'alpha.json'
    with open(path, 'wb') as f:
        f.truncate(2 << 30)  # a sparse 2 GiB file: nothing is read if the size comes first
    with pytest.raises(ConfigError, match='bytes, more than the 1048576'):
        tuned_alpha.read_table(str(path))


def test_a_table_tuned_for_another_config_is_refused_unless_any_config(tmp_path):
    ffhq = config_of('configs.ve.ffhq_256_ncsnpp_continuous')
    path = write_table(tmp_path / 'alpha.json', table_text(ffhq))
    config = config_of(**{'sampling.pds.tuned': path, 'sampling.steps': 30})
    message = refused(config, 'sampling.pds.tuned')
    assert 'tuned_any_config=True' in message
    for mode in ('eval',):
        refused(copy.deepcopy(config), 'sampling.pds.tuned', mode)
    bench = config_of(**{'sampling.pds.tuned': path, 'bench.samplers': ('pc_pds_tuned',)})
    refused(bench, 'sampling.pds.tuned', 'bench')  # through the pc_pds_tuned preset
    config.sampling.pds.tuned_any_config = True
    check_config(config, 'sample')
    same = write_table(tmp_path / 'same.json', table_text(config_of()))
    check_config(config_of(**{'sampling.pds.tuned': same}), 'sample')


def test_bench_preset_table_with_infinity_is_refused(tmp_path):
    path = write_table(tmp_path / 'alpha.json', '{"steps": [20, 40], "alpha": [3.0, Infinity]}')
    refused(config_of(**{'sampling.pds.tuned': path, 'bench.samplers': ('pc_pds_tuned',)}),
            'sampling.pds.tuned', 'bench')


def test_bench_sampler_without_a_fitting_budget_is_named():
    from pds.quality import samplers as sampler_bench

    config = config_of(**{'bench.samplers': ('pc', 'edm_heun'), 'bench.nfe': (1,)})
    _, budgets, rtols, eps_rels = sampler_bench.settings(config)
    assert sampler_bench.cell_configs(config, 'edm_heun', budgets, rtols, eps_rels)
    with pytest.raises(ConfigError) as err:
        sampler_bench.cell_configs(config, 'pc', budgets, rtols, eps_rels)
    assert err.value.field == 'bench.samplers' and err.value.value == 'pc'
