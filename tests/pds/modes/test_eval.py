"""``--mode=eval`` and ``--mode=fid`` end to end on the exact-score CIFAR-10-sized config.

Small on purpose (Inception on CPU is slow): 4 samples in rounds of 2, 3 sampler
iterations, random Inception weights written in the loader's format. The resume test kills a
real eval process with SIGKILL after its first round file is written (the child process
blocks right after that write so the kill lands at a known point), restarts it and compares
with an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs.analytic import cifar10
from evaluation.inception import RESIZE_POLICY
from pds.modes import eval as eval_mode
from pds.modes import fid as fid_mode
from pds.runtime.errors import ConfigError
from tests.helpers.inception_files import random_weights, write_ref
from tests.helpers.killed_rounds import run_killed_after_first_round
from tests.helpers.paths import ROOT, jax_env

NUM, BATCH = 4, 2
SETTINGS = {  # shared by the in-process configs and the command line of the killed run
    'eval.num_samples': NUM, 'eval.batch_size': BATCH, 'eval.inception_batch_size': BATCH,
    'eval.is_splits': 2, 'eval.kid_num_subsets': 10, 'sampling.steps': 3,
    'sampling.pds.num_stat_images': 8,
}



@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('eval_inputs')
    random_weights(d / 'weights.npz')
    write_ref(d / 'ref.npz')
    write_ref(d / 'ref_nofeat.npz', features=False)
    write_ref(d / 'ref_64.npz', dim=64)
    return {k: str(d / f'{k}.npz') for k in ('weights', 'ref', 'ref_nofeat', 'ref_64')}


def make_config(files, **overrides):
    config = cifar10.get_config()
    config.update_from_flattened_dict({**SETTINGS, 'eval.inception_weights': files['weights'],
                                       'eval.ref_stats': files['ref'], **overrides})
    return config


@pytest.fixture(scope='module')
def uninterrupted(files, tmp_path_factory):
    workdir = tmp_path_factory.mktemp('eval_whole')
    report = eval_mode.run(make_config(files), str(workdir))['exact']
    return workdir, report


def round_samples(workdir, k: int) -> np.ndarray:
    with np.load(workdir / 'eval' / 'exact' / f'round_{k}.npz') as f:
        return f['samples']


@pytest.mark.slow
def test_report_contents(uninterrupted):
    workdir, report = uninterrupted
    assert report['num_samples'] == NUM and report['rounds'] == 2
    assert report['nfe'] == 6 and report['iterations'] == 3
    assert report['sampler']['pds']['alpha'] == 5.0
    assert report['sampler']['pds']['freq_mask'] == 'stats'
    assert report['fid'] > 0 and report['kid']['subset_size'] == NUM
    assert report['inception_score']['splits'] == 2 and report['resize'] == RESIZE_POLICY
    assert report['timing']['wall_seconds'] > 0
    on_disk = json.loads((workdir / 'eval' / 'report_exact.json').read_text())
    assert on_disk == report
    with np.load(workdir / 'eval' / 'report_exact.npz') as f:
        assert f['mu'].shape == (2048,) and f['sigma'].shape == (2048, 2048)
    with np.load(workdir / 'eval' / 'exact' / 'round_1.npz') as f:
        assert f['samples'].shape == (BATCH, 32, 32, 3) and f['samples'].dtype == np.uint8
        assert f['pool_3'].shape == (BATCH, 2048) and f['logits'].shape == (BATCH, 1008)


@pytest.mark.slow
def test_killed_eval_resumes(files, uninterrupted, tmp_path, monkeypatch):
    whole_dir, whole = uninterrupted
    env = jax_env()
    args = [f'--{"config." + k}={v}' for k, v in SETTINGS.items()]
    round_dir = tmp_path / 'eval' / 'exact'
    run_killed_after_first_round(
        [f'--config={ROOT}/configs/analytic/cifar10.py', f'--workdir={tmp_path}', '--mode=eval',
         *args, f'--config.eval.inception_weights={files["weights"]}',
         f'--config.eval.ref_stats={files["ref"]}'], env, round_dir)
    assert sorted(os.listdir(round_dir)) == ['round_0.npz']
    assert not (tmp_path / 'eval' / 'report_exact.json').exists()
    (round_dir / '.tmp-cut-short').write_bytes(b'partial')  # a write a kill interrupted

    drawn = []
    real = eval_mode.sample_rounds
    monkeypatch.setattr(eval_mode, 'sample_rounds',
                        lambda *a, **k: drawn.append(sorted(k['only'])) or real(*a, **k))
    resumed = eval_mode.run(make_config(files), str(tmp_path))['exact']
    assert drawn == [[1]]  # only the missing round is sampled
    assert sorted(os.listdir(round_dir)) == ['round_0.npz', 'round_1.npz']
    assert resumed['rounds_resumed'] == 1 and resumed['rounds_sampled'] == 1
    total = sum(len(round_samples(tmp_path, k)) for k in range(2))
    assert total == resumed['num_samples'] == NUM
    for k in range(2):
        np.testing.assert_array_equal(round_samples(tmp_path, k), round_samples(whole_dir, k))
    for key in ('fid', 'kid', 'inception_score', 'num_samples', 'nfe', 'sampler',
                'fingerprint'):
        assert resumed[key] == whole[key], key

    # A finished report is kept: nothing is sampled again.
    drawn.clear()
    again = eval_mode.run(make_config(files), str(tmp_path))['exact']
    assert drawn == [] and again == resumed


def _no_sampling(monkeypatch):
    def fail(*a, **k):
        raise AssertionError('sampling started')

    monkeypatch.setattr(eval_mode, 'sample_rounds', fail)


def _assert_one_line(err, *parts):
    msg = str(err.value)
    assert '\n' not in msg
    for part in parts:
        assert part in msg, msg


@pytest.mark.slow
def test_missing_weights(files, tmp_path, monkeypatch):
    _no_sampling(monkeypatch)
    missing = str(tmp_path / 'inception_fid.npz')
    with pytest.raises(ConfigError) as err:
        eval_mode.run(make_config(files, **{'eval.inception_weights': missing}), str(tmp_path))
    _assert_one_line(err, 'eval.inception_weights', missing,
                     'python -m evaluation.inception_weights')
    assert not (tmp_path / 'eval').exists()


def test_mismatched_stats_dimensions(files, tmp_path, monkeypatch):
    _no_sampling(monkeypatch)
    with pytest.raises(ConfigError) as err:
        eval_mode.run(make_config(files, **{'eval.ref_stats': files['ref_64']}), str(tmp_path))
    _assert_one_line(err, 'eval.ref_stats', 'mismatched dimensions', '(64,)')
    assert not (tmp_path / 'eval').exists()


@pytest.mark.parametrize('num,batch', [(5, 2), (3, 4)])
def test_num_samples_not_whole_rounds(files, tmp_path, monkeypatch, num, batch):
    _no_sampling(monkeypatch)
    overrides = {'eval.num_samples': num, 'eval.batch_size': batch}
    with pytest.raises(ConfigError) as err:
        eval_mode.run(make_config(files, **overrides), str(tmp_path))
    _assert_one_line(err, f'eval.num_samples={num}', f'multiple of eval.batch_size={batch}')


@pytest.mark.slow
def test_changed_settings_refuse_old_rounds(files, uninterrupted, tmp_path):
    whole_dir, _ = uninterrupted
    round_dir = tmp_path / 'eval' / 'exact'
    round_dir.mkdir(parents=True)
    (round_dir / 'round_0.npz').write_bytes(
        (whole_dir / 'eval' / 'exact' / 'round_0.npz').read_bytes())
    with pytest.raises(ConfigError, match='--overwrite'):
        eval_mode.run(make_config(files, seed=7), str(tmp_path))


@pytest.mark.slow
def test_fid_mode_folder_and_npz_agree(files, uninterrupted, tmp_path):
    whole_dir, report = uninterrupted
    images = np.concatenate([round_samples(whole_dir, k) for k in range(2)])
    folder = tmp_path / 'pngs'
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f'{i:05d}.png')
    np.savez(tmp_path / 'images.npz', arr_0=images)
    config = make_config(files)
    from_folder = fid_mode.run(config, str(tmp_path / 'a'), source=str(folder))
    from_npz = fid_mode.run(config, str(tmp_path / 'b'), source=str(tmp_path / 'images.npz'))
    for key in ('fid', 'kid', 'inception_score', 'num_images'):
        assert from_folder[key] == from_npz[key], key
    assert from_folder['num_images'] == NUM and from_folder['source_kind'] == 'folder'
    assert from_folder['fid'] == pytest.approx(report['fid'], rel=1e-6)
    saved = json.loads((tmp_path / 'a' / 'fid_report.json').read_text())
    assert saved['fid'] == from_folder['fid']

    # Reference without raw features: KID is null and the report says why.
    no_feat = make_config(files, **{'eval.ref_stats': files['ref_nofeat']})
    res = fid_mode.run(no_feat, str(tmp_path / 'c'), source=str(tmp_path / 'images.npz'))
    assert res['kid'] is None and any('KID skipped' in n for n in res['notes'])


def test_fid_mode_errors(files, tmp_path):
    config = make_config(files)
    with pytest.raises(ConfigError) as err:
        fid_mode.run(config, str(tmp_path / 'w1'), source=str(tmp_path / 'nope'))
    _assert_one_line(err, '--source', 'does not exist')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ConfigError) as err:
        fid_mode.run(config, str(tmp_path / 'w2'), source=str(tmp_path / 'empty'))
    _assert_one_line(err, '--source', 'holds none')
    np.savez(tmp_path / 'x.npz', samples=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ConfigError) as err:
        fid_mode.run(make_config(files, **{'eval.ref_stats': files['ref_64']}),
                    str(tmp_path / 'w3'), source=str(tmp_path / 'x.npz'))
    _assert_one_line(err, 'eval.ref_stats', 'mismatched dimensions')


@pytest.mark.slow
def test_cli_missing_weights_one_line(tmp_path):
    env = jax_env()
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'main.py'),
         f'--config={ROOT}/configs/analytic/cifar10.py', f'--workdir={tmp_path}',
         '--mode=eval', f'--config.eval.inception_weights={tmp_path}/w.npz'],
        capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 2, res.stderr[-2000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith('error: invalid eval.inception_weights=') and 'w.npz' in last
    assert 'Traceback' not in res.stderr
    assert f'`python -m evaluation.inception_weights --fetch --out {tmp_path}/w.npz`' in last


@pytest.mark.parametrize('n,d,n_ref', [(5, 64, 3), (5, 64, 200), (64, 64, 10), (90, 64, 100)])
def test_low_rank_fid_matches_full(n, d, n_ref):
    """scoring.fid_to_reference's N x N route (N <= d) equals the d x d computation."""
    from evaluation import metrics
    from pds.quality.inception import fid_to_reference

    rng = np.random.default_rng(n + n_ref)
    feats = rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, d) + 1.0
    ref = metrics.stats_from_features(rng.normal(size=(n_ref, d)))
    full = metrics.fid_from_stats(metrics.stats_from_features(feats), ref)
    assert fid_to_reference(feats, ref) == pytest.approx(full, rel=1e-6)
    assert fid_to_reference(feats, metrics.stats_from_features(feats)) == pytest.approx(
        0.0, abs=1e-6 * full)


def test_checkpoint_selection(monkeypatch, tmp_path):
    """begin/end select stored steps; -1 means newest / no upper bound; none is an error."""
    import pds.storage.sampling_checkpoints

    monkeypatch.setattr(pds.storage.sampling_checkpoints, 'stored_steps',
                        lambda ckpt_dir: [5, 10, 20])
    config = cifar10.get_config()
    config.model.name = 'ncsnpp'

    def names(begin, end):
        config.eval.begin_ckpt, config.eval.end_ckpt = begin, end
        return eval_mode.checkpoint_names(config, str(tmp_path))

    assert names(-1, -1) == ['20'] and names(6, -1) == ['10', '20']
    assert names(5, 10) == ['5', '10'] and names(0, 5) == ['5']
    with pytest.raises(ConfigError, match=r'eval.begin_ckpt=11.*\[5, 10, 20\]'):
        names(11, 19)


@pytest.mark.slow
def test_checkpoints_share_one_compiled_sampler(files, tmp_path):
    """Two network checkpoints in one eval: the sampler compiles once, and the second
    checkpoint's samples equal those of an eval of that checkpoint alone. One round of
    BATCH samples per checkpoint (the round loop is test_report_contents' subject) and the
    tiny NCSN++ without residual blocks outside the middle: what compiles, and how often,
    does not depend on either."""
    import jax

    from models.registry import init_variables
    from pds.storage.sampling_checkpoints import save_variables
    from tests.helpers.train_driver import small_config

    def config_for(begin):
        config = small_config()
        config.update_from_flattened_dict({**SETTINGS, 'eval.num_samples': BATCH,
                                           'eval.begin_ckpt': begin,
                                           'eval.inception_weights': files['weights'],
                                           'eval.ref_stats': files['ref']})
        return config

    both, alone = tmp_path / 'both', tmp_path / 'alone'
    for step in (1, 2):
        variables = jax.tree_util.tree_map(
            np.asarray, init_variables(config_for(0), jax.random.key(step)))
        for workdir in (both, alone):
            save_variables(str(workdir / 'checkpoints'), variables, step)
    reports = eval_mode.run(config_for(0), str(both))
    assert sorted(reports) == ['1', '2']
    assert reports['1']['timing']['compile_seconds'] > 0
    assert reports['2']['timing']['compile_seconds'] == 0
    single = eval_mode.run(config_for(-1), str(alone))['2']  # newest only: compiles afresh
    assert single['timing']['compile_seconds'] > 0
    assert reports['2']['rounds'] == single['rounds'] == 1
    a = np.load(both / 'eval' / '2' / 'round_0.npz')['samples']
    b = np.load(alone / 'eval' / '2' / 'round_0.npz')['samples']
    np.testing.assert_array_equal(a, b)
    c = np.load(both / 'eval' / '1' / 'round_0.npz')['samples']
    assert not np.array_equal(c, np.load(both / 'eval' / '2' / 'round_0.npz')['samples'])
