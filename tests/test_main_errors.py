"""Bad input: one line naming the field, the value and what is allowed; exit code 2; no
output that looks complete."""

import os
import subprocess
import sys

import numpy as np
import pytest

from configs.analytic import cifar10
from pds.modes import sample as sample_mode
from pds.runtime.errors import ConfigError
from tests.helpers.paths import ROOT, jax_env


def small_config(**overrides):
    config = cifar10.get_config()
    config.data.image_size = 8
    config.eval.batch_size = 2
    config.eval.num_samples = 2
    config.sampling.steps = 3
    config.sampling.pds.num_stat_images = 8
    config.update_from_flattened_dict(overrides)
    return config


CASES = [
    ({'sampling.predictor': 'heun'}, 'sampling.predictor', 'reverse_diffusion'),
    ({'sampling.corrector': 'hmc'}, 'sampling.corrector', 'langevin'),
    ({'sampling.precondition': 'ddim'}, 'sampling.precondition', "'pds'"),
    ({'sampling.pds.alpha': 1.0}, 'sampling.pds.alpha', '> 1'),
    ({'sampling.pds.alpha': -2.0}, 'sampling.pds.alpha', '> 1'),
    ({'sampling.steps': 0}, 'sampling.steps', '>= 1'),
    ({'sampling.pds.freq_mask': '/nonexistent/mask.npy'}, 'sampling.pds.freq_mask', '.npy'),
    ({'eval.batch_size': 0}, 'eval.batch_size', '>= 1'),
    ({'training.sde': 'ode'}, 'training.sde', 'vesde'),
]


@pytest.mark.parametrize('overrides,field,allowed', CASES)
def test_config_errors(tmp_path, overrides, field, allowed):
    with pytest.raises(ConfigError) as err:
        sample_mode.run(small_config(**overrides), str(tmp_path))
    msg = str(err.value)
    assert field in msg and allowed in msg and '\n' not in msg
    assert not (tmp_path / 'metrics.json').exists()


def test_mask_shape_mismatch(tmp_path):
    path = tmp_path / 'mask.npy'
    np.save(path, np.ones((3, 16, 16), np.float32))
    with pytest.raises(ConfigError, match=r'sampling.pds.space_mask.*\(3, 8, 8\).*\(3, 16, 16\)'):
        sample_mode.run(small_config(**{'sampling.pds.space_mask': str(path)}), str(tmp_path))


def test_unwritable_workdir(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(ConfigError, match='--workdir'):
        sample_mode.run(small_config(), str(blocker / 'sub'))


def test_existing_outputs_are_kept(tmp_path):
    sample_mode.run(small_config(), str(tmp_path))
    before = (tmp_path / 'samples' / 'samples_0.npz').read_bytes()
    with pytest.raises(ConfigError, match='--overwrite'):
        sample_mode.run(small_config(), str(tmp_path))
    assert (tmp_path / 'samples' / 'samples_0.npz').read_bytes() == before


def run_main(tmp_path, *args, devices=1):
    env = jax_env(devices)
    cmd = [sys.executable, os.path.join(ROOT, 'main.py'),
           f'--config={os.path.join(ROOT, "configs/analytic/cifar10.py")}',
           f'--workdir={tmp_path}', '--config.data.image_size=8',
           '--config.eval.num_samples=4', '--config.sampling.steps=3',
           '--config.sampling.pds.num_stat_images=8', *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def test_main_exit_code_and_one_line(tmp_path):
    res = run_main(tmp_path, '--config.sampling.predictor=heun')
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith('error:')]
    assert lines == [res.stderr.strip().splitlines()[-1]]
    assert "sampling.predictor='heun'" in lines[0]
    assert not (tmp_path / 'metrics.json').exists()


@pytest.mark.slow
def test_batch_not_divisible_by_devices(tmp_path):
    res = run_main(tmp_path, '--config.eval.batch_size=6', devices=4)
    assert res.returncode == 2, res.stderr[-2000:]
    assert 'eval.batch_size=6' in res.stderr and 'device count (4)' in res.stderr
    assert not (tmp_path / 'metrics.json').exists()


@pytest.mark.slow
def test_sample_mode_outputs(tmp_path):
    res = run_main(tmp_path, '--config.eval.batch_size=2', '--config.sampling.save_raw=True')
    assert res.returncode == 0, res.stderr[-2000:]
    import json

    metrics = json.loads((tmp_path / 'metrics.json').read_text())
    assert metrics['nfe'] == 6 and metrics['num_samples'] == 4 and metrics['rounds'] == 2
    assert metrics['frechet_distance'] > 0 and metrics['noise_floor'] > 0
    with np.load(tmp_path / 'samples' / 'samples_1.npz') as f:
        assert f['samples'].dtype == np.uint8 and f['samples'].shape == (2, 8, 8, 3)
        expected = np.clip(f['raw'] * 255.0, 0, 255).astype(np.uint8)
        assert np.array_equal(f['samples'], expected)
    assert (tmp_path / 'samples' / 'grid.png').stat().st_size > 0


def test_bench_needs_the_gaussian_field(tmp_path):
    from pds.modes import bench as bench_mode

    config = small_config(**{'data.dataset': 'CIFAR10'})
    with pytest.raises(ConfigError, match=r"data\.dataset='CIFAR10'.*gaussian_field"):
        bench_mode.run(config, str(tmp_path))
    assert not (tmp_path / 'bench' / 'quality.csv').exists()
