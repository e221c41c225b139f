"""Nothing lost, nothing silent (issue 13), through ``main.py`` as a user runs it:

- a failed ``--overwrite`` run leaves the previous run byte-identical (every file hashed),
  whether it fails while checking its input or after it began writing;
- non-finite results stop with exit 1 and one line naming the round and first iteration;
  a finite divergence is a warning with the clipped fraction; metrics.json is strict JSON;
- bad flags, config files, config fields and values: exit 2 and one line naming them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.paths import ROOT, jax_env

pytestmark = pytest.mark.slow  # main.py subprocesses (2-9 s each): left out of `make test-fast`

FIELD = os.path.join(ROOT, 'configs/analytic/field_16.py')
TINY_TRAIN = os.path.join(ROOT, 'configs/tiny/ncsnpp_train.py')
NETWORK = os.path.join(ROOT, 'configs/ve/gaussian_field_16_ncsnpp_small.py')
SMALL = ['--config.eval.num_samples=8', '--config.eval.batch_size=4', '--config.sampling.steps=3']


def main_py(*args: str, devices: int | None = 1) -> subprocess.CompletedProcess:
    cmd = [sys.executable, os.path.join(ROOT, 'main.py'), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=jax_env(devices))


def error_line(res: subprocess.CompletedProcess) -> str:
    """The one 'error:' line of stderr (asserted to be exactly one, and no traceback)."""
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith('error:')]
    assert len(lines) == 1, res.stderr[-3000:]
    assert 'Traceback' not in res.stderr, res.stderr[-3000:]
    return lines[0]


def tree_hash(root) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    out = {}
    for d, _, files in os.walk(root):
        for name in files:
            path = os.path.join(d, name)
            with open(path, 'rb') as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope='module')
def sample_run(tmp_path_factory):
    """A complete field_16 sample run (8 samples in 2 rounds of 4, 3 iterations)."""
    workdir = tmp_path_factory.mktemp('sample_run') / 'w'
    res = main_py(f'--config={FIELD}', f'--workdir={workdir}', *SMALL)
    assert res.returncode == 0, res.stderr[-3000:]
    return workdir


def copy_of(run, tmp_path):
    workdir = tmp_path / 'w'
    shutil.copytree(run, workdir)
    return workdir


# the probes of the issue: input errors (exit 2, before anything is touched) and a run that
# fails after the old outputs were set aside (exit 1: they come back)
SAMPLE_PROBES = [
    (['--cpu_devices=2', '--config.eval.batch_size=3', '--config.eval.num_samples=6'], 2,
     'eval.batch_size=3'),
    (['--config.seed=-1'], 2, 'seed=-1'),
    (['--config.seed=4294967296'], 2, 'seed=4294967296'),
    (['--config.sampling.pds.alpha=inf'], 2, 'sampling.pds.alpha=inf'),
    (['--config.sampling.snr=inf'], 2, 'sampling.snr=inf'),
    (['--config.sampling.snr=1e20'], 1, 'non-finite samples in round 0'),
]


@pytest.mark.parametrize('args,code,named', SAMPLE_PROBES)
def test_failed_overwrite_leaves_the_sample_run_byte_identical(sample_run, tmp_path, args,
                                                               code, named):
    workdir = copy_of(sample_run, tmp_path)
    before = tree_hash(workdir)
    res = main_py(f'--config={FIELD}', f'--workdir={workdir}', '--overwrite', *SMALL, *args,
                  devices=None)
    assert res.returncode == code, res.stderr[-3000:]
    assert named in error_line(res)
    assert tree_hash(workdir) == before
    assert sorted(os.listdir(workdir)) == ['metrics.json', 'samples']  # nothing set aside left


def test_non_finite_sampling_names_round_iteration_and_settings(sample_run, tmp_path):
    res = main_py(f'--config={FIELD}', f'--workdir={tmp_path / "w"}', *SMALL,
                  '--config.sampling.snr=1e20')
    assert res.returncode == 1
    line = error_line(res)
    assert 'round 0' in line and 'iteration 0 of 3' in line and 'snr=1e+20' in line
    assert not (tmp_path / 'w' / 'metrics.json').exists()
    assert not list((tmp_path / 'w').glob('samples/samples_*.npz'))


def strict_load(path) -> dict:
    def refuse(token):
        raise ValueError(f'non-strict JSON token {token}')

    with open(path) as f:
        return json.load(f, parse_constant=refuse)


@pytest.mark.parametrize('probe', ['--config.sampling.snr=1e3', '--config.sampling.steps=1'])
def test_finite_divergence_warns_with_the_clipped_fraction(tmp_path, probe):
    res = main_py(f'--config={FIELD}', f'--workdir={tmp_path}', *SMALL, probe)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = strict_load(tmp_path / 'metrics.json')
    assert metrics['clipped_fraction'] > 0.5
    assert 'outside the data range' in res.stderr
    assert f'{100 * metrics["clipped_fraction"]:.1f}%' in res.stderr


def test_a_converged_run_clips_little_and_does_not_warn(tmp_path):
    """Exact field samples leave [0, 1] in about 2% of their values (field_16's variance);
    a converged sampler (100 iterations) stays below the 5% warning threshold."""
    res = main_py(f'--config={FIELD}', f'--workdir={tmp_path}', *SMALL,
                  '--config.sampling.steps=100')
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = strict_load(tmp_path / 'metrics.json')
    assert 0.0 <= metrics['clipped_fraction'] < 0.05
    assert 'outside the data range' not in res.stderr


@pytest.mark.parametrize('mask', ['freq_mask', 'space_mask'])
def test_all_zero_mask_is_refused(tmp_path, mask):
    """An all-zero statistic would give 0/0 gains under the normalized transform."""
    zero = tmp_path / 'zero.npy'
    np.save(zero, np.zeros((3, 16, 16), np.float32))
    res = main_py(f'--config={FIELD}', f'--workdir={tmp_path / "w"}', *SMALL,
                  f'--config.sampling.pds.{mask}={zero}')
    assert res.returncode == 2
    assert f'sampling.pds.{mask}' in error_line(res)
    assert not (tmp_path / 'w' / 'metrics.json').exists()


@pytest.mark.parametrize('args,named', [
    (['--mode=bogus'], '--mode=bogus'),
    (['--bogus_flag'], 'bogus_flag'),
    (['--config.seed=abc'], '--config.seed=abc'),
    (['--config.nope=1'], '--config.nope'),
    (['--config.model.name=unet'], "model.name='unet'"),
    (['--config.sampling.steps=10000000'], 'sampling.steps=10000000'),
    (['--config.sampling.n_steps_each=1000000000'], 'sampling.n_steps_each=1000000000'),
    (['--config.data.num_channels=0'], 'data.num_channels=0'),
    (['--config.optim.lr=-0.001', '--mode=train'], 'optim.lr=-0.001'),
    (['--distributed'], '--coordinator_address=None'),
])
def test_bad_flags_and_fields_are_one_line_and_exit_2(tmp_path, args, named):
    res = main_py(f'--config={FIELD}', f'--workdir={tmp_path / "w"}', *args)
    assert res.returncode == 2, res.stderr[-3000:]
    assert named in error_line(res)
    assert not (tmp_path / 'w').exists()  # nothing claimed


@pytest.mark.parametrize('config', ['configs/nope.py', '/etc/hostname'])
def test_missing_or_broken_config_file_is_one_line(tmp_path, config):
    res = main_py(f'--config={config}', f'--workdir={tmp_path}')
    assert res.returncode == 2
    assert f'--config={config!r}' in error_line(res)


def test_missing_workdir_flag_is_one_line(tmp_path):
    res = main_py(f'--config={FIELD}')
    assert res.returncode == 2
    assert '--workdir' in error_line(res)


def fake_training_run(workdir) -> None:
    """The files a training run leaves (their content does not matter to --overwrite)."""
    for rel, data in (('train_checkpoints/snapshots/4/state/data', b'state'),
                      ('checkpoints/4/variables/data', b'variables'),
                      ('train_metrics.jsonl', b'{"step": 2, "loss": 1.0}\n')):
        path = os.path.join(workdir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)


TRAIN = ['--mode=train', '--config.training.n_iters=4', '--config.model.num_res_blocks=0']


@pytest.mark.parametrize('args,code,named', [
    (['--config.data.dataset=npz', '--config.data.path=/nonexistent.npz'], 2, 'data.path'),
    (['--config.training.continuous=False'], 2, 'training.continuous=False'),
    (['--config.training.grad_shards=3'], 2, 'training.grad_shards=3'),
])
def test_failed_overwrite_leaves_the_training_run_byte_identical(tmp_path, args, code, named):
    workdir = tmp_path / 'w'
    fake_training_run(workdir)
    before = tree_hash(workdir)
    res = main_py(f'--config={TINY_TRAIN}', f'--workdir={workdir}', '--overwrite', *TRAIN,
                  *args)
    assert res.returncode == code, res.stderr[-3000:]
    assert named in error_line(res)
    assert tree_hash(workdir) == before


def test_diverging_training_stops_and_restores_the_overwritten_run(tmp_path):
    """The new run starts (the old outputs set aside), its loss becomes non-finite before its
    first checkpoint: exit 1 naming the step, and the old run comes back unchanged."""
    workdir = tmp_path / 'w'
    fake_training_run(workdir)
    before = tree_hash(workdir)
    res = main_py(f'--config={TINY_TRAIN}', f'--workdir={workdir}', '--overwrite', *TRAIN,
                  '--config.optim.lr=1e30', '--config.optim.grad_clip=-1.0',
                  '--config.optim.warmup=0', '--config.training.snapshot_freq_for_preemption=4')
    assert res.returncode == 1, res.stderr[-3000:]
    line = error_line(res)
    assert 'training diverged' in line and 'step' in line and 'optim.lr=1e+30' in line
    assert tree_hash(workdir) == before


def test_network_without_checkpoint_needs_allow_random_init(tmp_path):
    from pds.experiment.network import network_score_model
    from pds.runtime.errors import ConfigError
    from tests.helpers.tiny_train_config import get_config

    config = get_config()
    with pytest.raises(ConfigError, match='allow_random_init') as err:
        network_score_model(config, str(tmp_path))
    assert '--workdir' in str(err.value) and '\n' not in str(err.value)
    config.sampling.allow_random_init = True
    _, _, provenance = network_score_model(config, str(tmp_path))
    assert provenance['source'].startswith('random initialisation') and provenance['step'] is None


def test_all_nan_checkpoint_stops_the_sample_run(tmp_path):
    """A converted checkpoint whose parameters are all NaN: exit 1 naming round and
    iteration, no metrics.json, no sample files."""
    import jax

    from models.registry import init_variables
    from pds.storage.sampling_checkpoints import save_variables
    from tests.helpers.tiny_train_config import get_config

    variables = init_variables(get_config(), jax.random.key(0))
    nan = jax.tree_util.tree_map(lambda a: np.full(np.shape(a), np.nan, np.float32), variables)
    save_variables(str(tmp_path / 'checkpoints'), nan, 7, metadata={'source': 'test'})
    res = main_py(f'--config={os.path.join(ROOT, "tests/helpers/tiny_train_config.py")}',
                  f'--workdir={tmp_path}', '--config.eval.num_samples=2',
                  '--config.eval.batch_size=2', '--config.sampling.steps=2')
    assert res.returncode == 1, res.stderr[-3000:]
    assert 'non-finite samples in round 0' in error_line(res)
    assert not (tmp_path / 'metrics.json').exists() and not (tmp_path / 'samples').exists()
