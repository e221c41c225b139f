"""``--mode=tune`` and the tuned-alpha table (pds/modes/tune.py, pds/method/tuned_alpha.py)."""

import json

import numpy as np
import pytest

from configs.analytic import field_16
from pds.analytic.moments import population_moments
from pds.experiment.assemble import apply_tuned_alpha, experiment_from_config
from pds.method import tuned_alpha
from pds.modes import tune
from pds.runtime.errors import ConfigError


def small_config(**fields):
    config = field_16.get_config()
    config.tune.steps = (6, 12)
    config.tune.alphas = (2.0, 5.0, 20.0)
    config.tune.refine = 4
    config.sampling.pds.num_stat_images = 32
    for key, value in fields.items():
        config.tune[key] = value
    return config


def write_table(path, steps, alphas):
    path.write_text(json.dumps({'steps': steps, 'alpha': alphas}))
    return str(path)


def test_lookup_is_exact_on_the_table_and_log_log_between():
    steps, alphas = [10, 40, 100, 400], [2.0, 8.0, None, 50.0]
    assert tuned_alpha.alpha_for(steps, alphas, 40) == 8.0
    assert tuned_alpha.alpha_for(steps, alphas, 100) is None
    # halfway in log N between 10 and 40 (N = 20): the geometric mean of 2 and 8
    assert tuned_alpha.alpha_for(steps, alphas, 20) == pytest.approx(4.0, rel=1e-12)
    # a null neighbour: the nearer one in log N
    assert tuned_alpha.alpha_for(steps, alphas, 50) == 8.0
    assert tuned_alpha.alpha_for(steps, alphas, 300) == 50.0
    for n in (9, 401):
        with pytest.raises(ConfigError, match=r'sampling\.steps.*\[10, 400\]'):
            tuned_alpha.alpha_for(steps, alphas, n)


@pytest.mark.parametrize('content', [
    '{"steps": [10, 5], "alpha": [2.0, 3.0]}',  # not increasing
    '{"steps": [10], "alpha": [1.0]}',  # alpha <= 1
    '{"steps": [10, 20], "alpha": [2.0]}',  # lengths differ
    '{"steps": [10]}',  # no alphas
    'not json',
])
def test_a_bad_table_is_one_config_error_naming_the_field(tmp_path, content):
    path = tmp_path / 'alpha.json'
    path.write_text(content)
    with pytest.raises(ConfigError, match=r'sampling\.pds\.tuned'):
        tuned_alpha.read_table(str(path))
    with pytest.raises(ConfigError, match='no such file'):
        tuned_alpha.read_table(str(tmp_path / 'missing.json'))


def test_a_tuned_table_sets_alpha_or_turns_pds_off(tmp_path):
    config = small_config()
    config.sampling.pds.tuned = write_table(tmp_path / 'a.json', [6, 12], [3.0, None])
    config.sampling.steps = 6
    resolved = apply_tuned_alpha(config)
    assert resolved.sampling.pds.alpha == 3.0 and resolved.sampling.precondition == 'pds'
    assert config.sampling.pds.alpha == 5.0  # the caller's config is not changed
    assert apply_tuned_alpha(resolved).sampling.pds.alpha == 3.0  # idempotent
    config.sampling.steps = 12
    assert apply_tuned_alpha(config).sampling.precondition == 'none'
    config.sampling.precondition = 'none'  # no preconditioner: the table is not read
    config.sampling.pds.tuned = str(tmp_path / 'missing.json')
    assert apply_tuned_alpha(config) is config


def test_tune_picks_the_best_alpha_and_the_sampler_reproduces_it(tmp_path):
    config = small_config()
    report = tune.run(config, str(tmp_path))
    out = tmp_path / 'tune'
    for name in tune.FILES:
        assert (out / name).stat().st_size > 0
    table = json.loads((out / 'alpha.json').read_text())
    assert table['steps'] == [6, 12] and table['estimate'] == 'population'
    rows = list(np.genfromtxt(out / 'tune.csv', delimiter=',', names=True, dtype=None,
                              encoding='utf-8'))
    for r in report['table']:
        n = r['iterations']
        cells = [c for c in rows if c['iterations'] == n]
        # the grid, the baseline and the refinement were all evaluated; alpha* is the best
        assert len(cells) == 1 + 3 + 4
        assert r['frechet_distance'] == min(c['frechet_distance'] for c in cells)
        assert r['frechet_distance'] <= r['baseline_frechet_distance']
        # the sampler run with the table's alpha at this N has the table's FD: the table
        # is read back (sampling.pds.tuned) and its moments recomputed independently
        cfg = small_config()
        cfg.sampling.pds.tuned = str(out / 'alpha.json')
        cfg.sampling.steps = n
        cfg = apply_tuned_alpha(cfg)
        fd = population_moments(cfg, experiment_from_config(cfg)).frechet_distance
        assert fd == pytest.approx(r['frechet_distance'], rel=1e-9)
    assert 'alpha*' in (out / 'tune.md').read_text()


@pytest.mark.parametrize('field, value, allowed', [
    ('alphas', (2.0,), 'at least two'),
    ('alphas', (0.5, 2.0), r'\(1, 1e12\)'),
    ('steps', (), 'non-empty'),
    ('steps', (6, 6), 'distinct'),
    ('refine', -1, r'\[0, 100\]'),
    ('estimate', 'guess', 'population'),
])
def test_bad_tune_fields(tmp_path, field, value, allowed):
    with pytest.raises(ConfigError, match=rf'tune\.{field}.*{allowed}'):
        tune.run(small_config(**{field: value}), str(tmp_path))


def test_tune_refuses_ode_solvers_and_unknown_distributions(tmp_path):
    config = small_config()
    config.sampling.method = 'pf_euler'
    with pytest.raises(ConfigError, match=r"sampling\.method.*'pc'"):
        tune.run(config, str(tmp_path))
    config = small_config()
    config.data.dataset = 'CIFAR10'
    with pytest.raises(ConfigError, match=r'data\.dataset.*--mode=tune'):
        tune.run(config, str(tmp_path))
