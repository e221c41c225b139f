"""``--mode=bench`` across samplers (pds/quality/samplers.py, pds/modes/bench.py): budgets to
step counts, the estimates per cell, the headline, the tuned-alpha preset and the refusals."""

import csv
import json

import pytest

from configs.analytic import field_16
from pds.analytic.moments import population_moments
from pds.experiment.assemble import experiment_from_config
from pds.modes import bench as bench_mode
from pds.quality import samplers
from pds.runtime.errors import ConfigError


def small_config(**bench):
    config = field_16.get_config()
    config.bench.nfe = (10, 21)
    config.bench.rtols = (1e-2,)
    config.bench.num_samples = config.bench.batch_size = 16
    config.sampling.pds.num_stat_images = 32
    for key, value in bench.items():
        config.bench[key] = value
    return config


@pytest.mark.slow
def test_each_budget_gets_the_largest_step_count_that_fits(tmp_path):
    names = ('pc', 'edm_heun', 'dpm_solver_3m', 'ddim', 'dopri5')
    config = small_config(samplers=names)
    rows = bench_mode.run(config, str(tmp_path))
    fixed = [r for r in rows if r['sampler'] != 'dopri5']
    assert [(r['sampler'], r['rung']) for r in fixed] == [
        ('pc', 'N=5'), ('pc', 'N=10'), ('edm_heun', 'N=5'), ('edm_heun', 'N=11'),
        ('dpm_solver_3m', 'N=9'), ('dpm_solver_3m', 'N=20'), ('ddim', 'N=10'),
        ('ddim', 'N=21')]
    per_step = {'pc': 2, 'edm_heun': 2, 'dpm_solver_3m': 1, 'ddim': 1}
    for r, budget in zip(fixed, [10, 21] * 4, strict=True):
        # the loop's own count fits the budget, and one more step would not
        assert budget - per_step[r['sampler']] < r['nfe'] <= budget, r
        assert r['estimate'] == 'population'
    # a population cell is the moment computation of that sampler's config itself
    cfg = small_config()
    cfg.sampling.update(method='edm_heun', grid='karras', prior='mean', precondition='none',
                        steps=11)
    want = population_moments(cfg, experiment_from_config(cfg)).frechet_distance
    assert fixed[3]['frechet_distance'] == want
    adaptive = [r for r in rows if r['sampler'] == 'dopri5']
    assert [r['rung'] for r in adaptive] == ['rtol=0.01']
    assert adaptive[0]['estimate'] == 'sampled' and adaptive[0]['frechet_distance_se'] > 0
    with open(tmp_path / 'bench' / 'samplers.csv') as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    md = (tmp_path / 'bench' / 'samplers.md').read_text()
    assert all(f'| {n} |' in md for n in names)
    assert (tmp_path / 'bench' / 'samplers.png').stat().st_size > 0


def test_the_tuned_preset_uses_the_tables_alpha_within_its_range(tmp_path):
    table = tmp_path / 'alpha.json'
    table.write_text(json.dumps({'steps': [5, 8], 'alpha': [3.0, 4.0]}))
    config = small_config(samplers=('pc_pds_tuned',), nfe=(6, 10, 16, 40))
    config.sampling.pds.tuned = str(table)
    ladder = samplers.cell_configs(config, 'pc_pds_tuned', [6, 10, 16, 40], [], [])
    # N = 3 and 20 fall outside the table's [5, 8]; N = 5 and 8 take its alphas
    assert [(rung, cfg.sampling.pds.alpha) for rung, cfg in ladder] == [('N=5', 3.0),
                                                                        ('N=8', 4.0)]


@pytest.mark.slow
def test_mean_prior_of_the_mixture_is_its_exact_mean(tmp_path):
    from configs.analytic import mixture_32

    config = mixture_32.get_config()
    config.data.image_size = 8
    config.bench.samplers, config.bench.nfe = ('pc', 'dpm_solver_2m'), (4,)
    config.bench.num_samples = config.bench.batch_size = 16
    rows = bench_mode.run(config, str(tmp_path))
    assert [r['sampler'] for r in rows] == ['pc', 'dpm_solver_2m']
    assert all(r['estimate'] == 'sampled' for r in rows)
    cfg = mixture_32.get_config()
    cfg.data.image_size = 8
    cfg.sampling.update(prior='mean', precondition='none')
    exp = experiment_from_config(cfg)
    mom = exp.mixture.exact_moments(8, 8)
    assert exp.prior_mean.shape == (8, 8, exp.mixture.num_channels)
    assert (exp.prior_mean == mom['mean'].astype('float32')).all()


@pytest.mark.parametrize('field, value, allowed', [
    ('samplers', ('pc', 'euler_heun'), 'bench.samplers'),
    ('samplers', ('pc', 'pc'), 'distinct'),
    ('nfe', (0, 10), r'\[1, 1e\+06\]'),
    ('rtols', (), 'non-empty'),
    ('ode_prior', 'gaussian', 'score_sde'),
    ('target_fd', -1.0, '>= 0'),
])
def test_bad_sampler_bench_fields(tmp_path, field, value, allowed):
    config = small_config(**{'samplers': ('pc',), field: value})
    with pytest.raises(ConfigError, match=allowed):
        bench_mode.run(config, str(tmp_path))
    assert not (tmp_path / 'bench').exists()


def test_the_tuned_preset_needs_a_table(tmp_path):
    with pytest.raises(ConfigError, match=r'sampling\.pds\.tuned'):
        bench_mode.run(small_config(samplers=('pc_pds_tuned',)), str(tmp_path))
