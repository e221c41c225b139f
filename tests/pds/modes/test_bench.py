"""``--mode=bench``: the population estimate by exact moments, its sampled spot checks, the
sampled estimate, and the refusals (pds/modes/bench.py)."""

import csv

import numpy as np
import pytest

from configs.analytic import field_16
from pds.analytic.moments import population_moments
from pds.experiment.assemble import experiment_from_config
from pds.modes import bench as bench_mode
from pds.quality import estimates
from pds.runtime.errors import ConfigError


def small_config(**bench):
    config = field_16.get_config()
    config.bench.steps = (6, 12)
    config.bench.alphas = (5.0,)
    config.bench.spot_checks = ((6, 0.0),)
    config.bench.num_samples = config.bench.batch_size = 64
    config.sampling.pds.num_stat_images = 32
    for key, value in bench.items():
        config.bench[key] = value
    return config


def read_rows(workdir):
    with open(workdir / 'bench' / 'quality.csv') as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_population_rows_spot_check_and_report(tmp_path):
    config = small_config()
    rows = bench_mode.run(config, str(tmp_path))
    # the curves: baseline, PDS a=5 (reference), PDS a=5 invariant; each on the ladder
    labels = ['baseline', 'PDS a=5', 'PDS a=5 invariant']
    assert [r['method'] for r in rows[:6]] == [m for m in labels for _ in (6, 12)]
    assert all(r['estimate'] == 'population' and r['frechet_distance_se'] == 0 for r in rows[:6])
    # a population row is the moment computation itself
    cfg = small_config()
    cfg.sampling.steps, cfg.sampling.precondition = 12, 'none'
    want = population_moments(cfg, experiment_from_config(cfg)).frechet_distance
    assert rows[1]['frechet_distance'] == want
    # the spot check: sampled, unbiased FD within its error bars of what it estimates; the
    # baseline at 6 iterations is far above the sampling noise (FD ~50 vs SE ~2)
    spot = rows[6]
    assert spot['estimate'] == 'sampled' and spot['method'] == 'baseline'
    assert spot['ring_pooled_fd'] > 10 * spot['frechet_distance_se'] > 0
    assert abs(spot['z']) < 4, spot
    assert spot['ring_pooled_fd'] <= spot['population_fd'] * (1 + 1e-12)
    assert len(read_rows(tmp_path)) == 7
    md = (tmp_path / 'bench' / 'quality.md').read_text()
    assert 'Population Frechet distance' in md and 'Spot checks' in md and '**' in md
    assert (tmp_path / 'bench' / 'quality.png').stat().st_size > 0


@pytest.mark.slow
def test_sampled_estimate_reports_error_bars_and_the_labelled_plug_in(tmp_path):
    config = small_config(estimate='sampled', steps=(4,), num_samples=16, batch_size=16)
    rows = bench_mode.run(config, str(tmp_path))
    assert [r['method'] for r in rows] == ['baseline', 'PDS a=5']
    for r in rows:
        assert r['estimate'] == 'sampled' and r['frechet_distance_se'] > 0
        assert np.isfinite(r['frechet_distance_plugin'])
    assert 'plug-in statistic' in (tmp_path / 'bench' / 'quality.md').read_text()


def test_auto_falls_back_to_sampling_with_a_space_mask_and_population_refuses_it():
    config = small_config()
    config.sampling.pds.space_mask = 'stats'
    assert estimates.choose_estimate(config) == 'sampled'
    config.bench.estimate = 'population'
    with pytest.raises(ConfigError, match=r'sampling\.pds\.space_mask'):
        estimates.choose_estimate(config)
    assert estimates.choose_estimate(small_config()) == 'population'


@pytest.mark.parametrize('field,value', [
    ('estimate', 'exact'), ('spot_checks', ((6, 1.0),)), ('spot_checks', ((0, 5.0),)),
    ('alphas', (0.5,)), ('steps', ())])
def test_bad_bench_fields_are_named(tmp_path, field, value):
    config = small_config(**{field: value})
    with pytest.raises(ConfigError, match=rf'bench\.{field}'):
        bench_mode.run(config, str(tmp_path))
    assert not (tmp_path / 'bench').exists()


@pytest.mark.slow
def test_mixture_is_benched_by_sampling_with_recovered_weights(tmp_path):
    from configs.analytic import mixture_32

    config = mixture_32.get_config()
    config.data.image_size = 16
    config.bench.steps = (4,)
    config.bench.num_samples = config.bench.batch_size = 16
    rows = bench_mode.run(config, str(tmp_path))
    assert [r['method'] for r in rows] == ['baseline', 'PDS a=5']
    for r in rows:
        assert r['estimate'] == 'sampled' and r['frechet_distance_se'] > 0
        assert len(r['mixture_weights']) == 3 and abs(sum(r['mixture_weights']) - 1) < 1e-12
    assert 'Mixture weights recovered' in (tmp_path / 'bench' / 'quality.md').read_text()
    config.bench.estimate = 'population'  # no exact moments for a mixture
    with pytest.raises(ConfigError, match=r'model\.name'):
        estimates.choose_estimate(config)
