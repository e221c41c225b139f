"""``--mode=bench`` and ``--mode=tune`` on real data (pds/quality/data_bench.py): a killed
bench resumes from its stored cells and reproduces the uninterrupted report; the floor and
ranking rules; bad input."""

import csv
import io
import os
import subprocess
import sys

import numpy as np
import pytest

from pds.modes import bench as bench_mode
from pds.modes import tune as tune_mode
from pds.quality import data_bench
from tests.helpers.killed_rounds import run_killed_after_first_round
from tests.helpers.paths import ROOT, jax_env
from tests.helpers.tiny_photo_config import get_config

CONFIG = os.path.join(ROOT, 'tests', 'helpers', 'tiny_photo_config.py')


def without_seconds(text: str) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO(text)))
    for r in rows:
        r.pop('seconds')
    return rows


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp('whole')
    rows = bench_mode.run(get_config(), str(workdir))
    return workdir, rows


@pytest.mark.slow
def test_killed_bench_resumes_and_reproduces_the_uninterrupted_report(uninterrupted, tmp_path,
                                                                     monkeypatch):
    whole_dir, rows = uninterrupted
    assert [(r['sampler'], r['rung']) for r in rows] == [
        ('pc', 'N=1'), ('pc', 'N=2'), ('dpm_solver_2m', 'N=2'), ('dpm_solver_2m', 'N=4')]
    cells = tmp_path / 'bench' / 'cells'
    run_killed_after_first_round([f'--config={CONFIG}', f'--workdir={tmp_path}',
                                  '--mode=bench'], jax_env(), cells, name='pc__N1.npz')
    assert sorted(os.listdir(cells)) == ['converged__reference.npz',
                                         'ode_reference__reference.npz', 'pc__N1.npz']
    assert not (tmp_path / 'bench' / 'samplers.md').exists()

    drawn = []
    real = data_bench.sample_rounds
    monkeypatch.setattr(data_bench, 'sample_rounds',
                        lambda *a, **k: drawn.append(k['desc']) or real(*a, **k))
    bench_mode.run(get_config(), str(tmp_path))
    assert drawn == ['pc N=2', 'dpm_solver_2m N=2', 'dpm_solver_2m N=4']  # the rest stored
    for name in ('samplers.md', 'references.json'):
        assert (tmp_path / 'bench' / name).read_text() == (whole_dir / 'bench' / name
                                                           ).read_text(), name
    assert without_seconds((tmp_path / 'bench' / 'samplers.csv').read_text()) == \
        without_seconds((whole_dir / 'bench' / 'samplers.csv').read_text())
    assert (tmp_path / 'bench' / 'samplers.png').stat().st_size > 0


@pytest.mark.slow
def test_a_cell_with_other_settings_is_drawn_again(uninterrupted, tmp_path):
    whole_dir, _ = uninterrupted
    path = whole_dir / 'bench' / 'cells' / 'pc__N1.npz'
    with np.load(path) as f:
        stamp = str(f['fingerprint'])
    assert data_bench.read_cell(str(path), stamp) is not None
    assert data_bench.read_cell(str(path), '0' * 64) is None  # e.g. another checkpoint
    broken = tmp_path / 'broken.npz'
    broken.write_bytes(path.read_bytes()[:100])
    assert data_bench.read_cell(str(broken), stamp) is None


@pytest.mark.slow
def test_the_report_carries_every_reference_and_check(uninterrupted):
    whole_dir, rows = uninterrupted
    md = (whole_dir / 'bench' / 'samplers.md').read_text()
    for text in ('data floor (reference B)', 'Gaussian model of the data', 'converged sampler',
                 'Memorisation', 'RMS per-pixel difference from the converged ODE'):
        assert text in md
    # only the deterministic sampler from the ODE prior gets the per-sample error
    assert all(('error' in r) == (r['sampler'] == 'dpm_solver_2m') for r in rows)


def test_floor_and_ranking_rules():
    floor = {'swd': 10.0, 'swd_se': 3.0}
    rows = [{'sampler': 'a', 'nfe': 10, 'swd': 30.0, 'swd_se': 4.0},
            {'sampler': 'a', 'nfe': 20, 'swd': 19.9, 'swd_se': 4.0},  # 9.9 <= 2 * 5
            {'sampler': 'b', 'nfe': 10, 'swd': 20.1, 'swd_se': 4.0},  # 10.1 > 2 * 5
            {'sampler': 'b', 'nfe': 40, 'swd': 8.0, 'swd_se': 4.0}]
    assert data_bench.nfe_to_floor(rows, floor, 'swd') == {'a': 20, 'b': 40}
    ranked = data_bench.ranking(rows)
    assert [(name, r['nfe'], worse) for name, r, worse in ranked] == [
        ('b', 40, False), ('a', 20, True)]  # 19.9 - 8 = 11.9 > 2 sqrt(32) = 11.3


@pytest.mark.slow
def test_the_grid_puts_each_cell_under_the_budget_that_holds_it():
    floor = {'swd': 10.0, 'swd_se': 1.0}
    rows = [{'sampler': 'pc', 'nfe': 20, 'swd': 50.0, 'swd_se': 1.0},
            {'sampler': 'pc', 'nfe': 66, 'swd': 11.0, 'swd_se': 1.0},
            {'sampler': 'dpm_solver_3m', 'nfe': 19, 'swd': 30.0, 'swd_se': 1.0},
            {'sampler': 'dopri5', 'nfe': 51.5, 'swd': 12.0, 'swd_se': 1.0}]  # adaptive: out
    lines = data_bench.grid_table(rows, floor, [66, 20])
    assert lines[2:] == ['| sampler | 20 | 66 |', '|---|---:|---:|',
                         '| pc | 50 +- 1 | **11 +- 1** |', '| dpm_solver_3m | 30 +- 1 |  |']


@pytest.mark.slow
def test_tune_on_real_data_writes_a_table(tmp_path):
    report = tune_mode.run(get_config(), str(tmp_path))
    assert report['metric'] == 'fd' and report['steps'] == [2]
    assert sorted(os.listdir(tmp_path / 'tune' / 'cells')) == [
        'PDS_a2__N2.npz', 'PDS_a5__N2.npz', 'baseline__N2.npz']
    assert (tmp_path / 'tune' / 'alpha.json').exists()


@pytest.mark.parametrize('flag, field', [
    ('--config.bench.samplers=()', 'bench.samplers'),
    ('--config.bench.num_samples=10', 'bench.num_samples'),
    ('--config.bench.converged_steps=-1', 'bench.converged_steps'),
    ('--config.tune.metric=fid', 'tune.metric'),
])
def test_bad_data_bench_fields_give_one_line(tmp_path, flag, field):
    mode = 'tune' if 'tune.' in flag else 'bench'
    res = subprocess.run([sys.executable, os.path.join(ROOT, 'main.py'), f'--config={CONFIG}',
                          f'--workdir={tmp_path}', f'--mode={mode}', flag], env=jax_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith('error')]
    assert len(lines) == 1 and field in lines[0], res.stderr[-2000:]
    assert 'Traceback' not in res.stderr


def test_fid_of_each_cell_where_the_weights_exist(tmp_path, monkeypatch):
    """With eval.ref_stats set, each cell carries the FID of its stored samples as uint8
    images. The Inception is replaced by a cheap stand-in feature map (the real network's
    FID is tested in tests/pds/modes/test_eval.py): what is checked is which images reach it
    and how its features become the FID."""
    from pds.quality import inception
    from tests.helpers.inception_files import write_ref

    def features(params, images, batch_size):
        assert images.dtype == np.uint8 and images.shape[1:] == (16, 16, 3)
        flat = images.reshape(len(images), -1).astype(np.float32) / 255.0
        return {'pool_3': np.tile(flat, (1, 3))[:, :2048], 'logits': flat[:, :1008]}

    monkeypatch.setattr(inception, 'image_features', features)
    monkeypatch.setattr(inception, 'inception_params', lambda config: ({}, 'stand-in'))
    write_ref(tmp_path / 'ref.npz')
    config = get_config()
    config.bench.samplers, config.bench.nfe = ('dpm_solver_2m',), (2,)
    config.bench.converged_steps, config.bench.ode_reference_rtol = 0, 0.0
    config.eval.ref_stats = str(tmp_path / 'ref.npz')
    [row] = bench_mode.run(config, str(tmp_path / 'run'))
    with np.load(tmp_path / 'run' / 'bench' / 'cells' / 'dpm_solver_2m__N2.npz') as f:
        images = np.round(255 * data_bench.clipped(f['samples'], config)).astype(np.uint8)
    ref = inception.load_reference(config.eval.ref_stats)
    want = inception.fid_to_reference(features(None, images, 0)['pool_3'], ref.stats)
    assert row['fid'] == want and np.isfinite(want)
    assert 'FID (and KID)' in (tmp_path / 'run' / 'bench' / 'samplers.md').read_text()


def test_agreement_of_two_runs():
    a = [{'sampler': 'pc', 'rung': 'N=10', 'swd': 10.0, 'swd_se': 3.0},
         {'sampler': 'pc', 'rung': 'N=20', 'swd': 10.0, 'swd_se': 3.0}]
    b = [{'sampler': 'pc', 'rung': 'N=10', 'swd': 22.0, 'swd_se': 4.0},  # z = 12 / 5
         {'sampler': 'pc', 'rung': 'N=20', 'swd': 27.5, 'swd_se': 4.0},  # z = 3.5
         {'sampler': 'pc', 'rung': 'N=40', 'swd': 0.0, 'swd_se': 1.0}]  # not in a
    got = data_bench.agreement(a, b, 'swd')
    assert got == {'cells': 2, 'within_3': 0.5, 'within_4': 1.0, 'max_abs_z': 3.5}
