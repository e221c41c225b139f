"""--mode=likelihood: the outputs and report on a small Gaussian field (exact score, exact
divergence: the closed form), resuming at the missing rounds (in process and after a kill),
settings changes, and bad input (one line, exit 2; a non-finite result, exit 1)."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from configs.analytic import field_16
from pds.likelihood import run as likelihood_run
from pds.modes import run_mode
from pds.runtime.errors import ConfigError
from tests.helpers.killed_rounds import run_killed_after_first_round
from tests.helpers.paths import ROOT, jax_env

SETTINGS = {'data.image_size': 4, 'eval.batch_size': 4, 'eval.num_samples': 8,
            'eval.bpd_num_probes': 0, 'eval.bpd_rtol': 1e-4, 'eval.bpd_atol': 1e-4}


def record_computed_rounds(monkeypatch) -> list[list[int]]:
    """The rounds each call of ``compute_rounds`` computes, recorded as the run goes."""
    computed = []
    real = likelihood_run.compute_rounds
    monkeypatch.setattr(likelihood_run, 'compute_rounds',
                        lambda setup, d, todo, fp: computed.append(list(todo)) or
                        real(setup, d, todo, fp))
    return computed


def make_config(**overrides):
    config = field_16.get_config()
    config.update_from_flattened_dict(SETTINGS)
    with config.ignore_type():  # a float where an integer belongs, as a program might set it
        config.update_from_flattened_dict(overrides)
    return config


def per_example(workdir) -> dict:
    with np.load(os.path.join(workdir, 'likelihood', 'examples_exact.npz')) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp('whole'))
    return workdir, run_mode('likelihood', make_config(), workdir)


def test_outputs_and_report(uninterrupted):
    workdir, rep = uninterrupted
    base = os.path.join(workdir, 'likelihood')
    assert sorted(os.listdir(os.path.join(base, 'exact'))) == ['round_0.npz', 'round_1.npz']
    for name in ('examples_exact.npz', 'report_exact.json', 'report_exact.md'):
        assert os.path.isfile(os.path.join(base, name)), name
    ex = per_example(workdir)
    np.testing.assert_array_equal(ex['index'], np.arange(8))
    d = 4 * 4 * 3
    np.testing.assert_allclose(ex['bpd'], -ex['logp'] / (d * np.log(2)), rtol=1e-12)
    np.testing.assert_allclose(ex['logp'], ex['prior_logp'] + ex['delta'], rtol=1e-6)
    assert rep['num_examples'] == 8 and rep['rounds'] == 2 and rep['dims'] == d
    assert rep['bpd']['mean'] == pytest.approx(ex['bpd'].mean())
    assert rep['bpd']['se'] == pytest.approx(ex['bpd'].std(ddof=1) / np.sqrt(8))
    cf = rep['closed_form']
    assert cf['solver_error_bpd']['max_abs'] < 1e-3 and cf['prior_kl']['nats_per_image'] > 0
    assert rep['jvps_per_nfe'] == d and rep['nfe']['mean'] == ex['nfe'].mean()
    assert 'no dequantisation' in rep['units']


def test_resumes_at_the_missing_round(uninterrupted, tmp_path, monkeypatch):
    whole_dir, whole = uninterrupted
    shutil.copytree(os.path.join(whole_dir, 'likelihood', 'exact'),
                    tmp_path / 'likelihood' / 'exact')
    os.remove(tmp_path / 'likelihood' / 'exact' / 'round_1.npz')
    computed = record_computed_rounds(monkeypatch)
    rep = run_mode('likelihood', make_config(), str(tmp_path))
    assert computed == [[1]] and rep['rounds_resumed'] == 1 and rep['rounds_computed'] == 1
    for key, value in per_example(whole_dir).items():
        np.testing.assert_array_equal(per_example(tmp_path)[key], value, err_msg=key)
    assert rep['bpd'] == whole['bpd'] and rep['fingerprint'] == whole['fingerprint']


def test_rounds_of_other_settings_need_overwrite(uninterrupted, tmp_path):
    whole_dir, _ = uninterrupted
    shutil.copytree(os.path.join(whole_dir, 'likelihood'), tmp_path / 'likelihood')
    other = make_config(**{'eval.bpd_rtol': 1e-3})
    with pytest.raises(ConfigError, match=r'--workdir.*--overwrite'):
        run_mode('likelihood', other, str(tmp_path))
    rep = run_mode('likelihood', other, str(tmp_path), overwrite=True)
    assert rep['rounds_computed'] == 2 and rep['solver']['rtol'] == 1e-3


@pytest.mark.parametrize('overrides,field', [
    ({'eval.bpd_dataset': 'validation'}, 'eval.bpd_dataset'),
    ({'eval.bpd_num_probes': -1}, 'eval.bpd_num_probes'),
    ({'eval.bpd_num_probes': 1.5}, 'eval.bpd_num_probes'),
    ({'eval.bpd_solver': 'rk45'}, 'eval.bpd_solver'),
    ({'eval.bpd_probe': 'sphere'}, 'eval.bpd_probe'),
    ({'eval.bpd_rtol': 0.0}, 'eval.bpd_rtol'),
    ({'eval.bpd_eps': 1.0}, 'eval.bpd_eps'),
    ({'eval.bpd_steps': 0, 'eval.bpd_solver': 'heun'}, 'eval.bpd_steps'),
    ({'eval.num_samples': 6}, 'eval.num_samples'),
    ({'sampling.prior': 'flat'}, 'sampling.prior'),
])
def test_bad_settings_name_the_field(tmp_path, overrides, field):
    with pytest.raises(ConfigError) as err:
        run_mode('likelihood', make_config(**overrides), str(tmp_path))
    assert field in str(err.value) and '\n' not in str(err.value)
    assert not (tmp_path / 'likelihood').exists()


def main_py(tmp_path, *args):
    cmd = [sys.executable, os.path.join(ROOT, 'main.py'),
           f'--config={os.path.join(ROOT, "configs/analytic/field_16.py")}',
           f'--workdir={tmp_path}', '--mode=likelihood',
           *[f'--config.{k}={v}' for k, v in SETTINGS.items()], *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=jax_env())


def test_main_exit_codes(tmp_path):
    res = main_py(tmp_path / 'split', '--config.eval.bpd_dataset=validation')
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1].startswith('error: invalid eval.bpd_dataset=')
    res = main_py(tmp_path / 'probes', '--config.eval.bpd_num_probes=-2')
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1].startswith('error: invalid eval.bpd_num_probes=')
    # an example that cannot reach T in one attempted step is NaN: one line, exit 1
    res = main_py(tmp_path / 'steps', '--config.eval.bpd_max_steps=1')
    assert res.returncode == 1, res.stderr[-2000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith('error: non-finite log-likelihood in round 0') and \
        'eval.bpd_max_steps=1' in last
    assert not os.listdir(tmp_path / 'steps' / 'likelihood' / 'exact')




@pytest.mark.slow
def test_killed_run_resumes(uninterrupted, tmp_path, monkeypatch):
    whole_dir, _ = uninterrupted
    round_dir = tmp_path / 'likelihood' / 'exact'
    run_killed_after_first_round(
        [f'--config={ROOT}/configs/analytic/field_16.py', f'--workdir={tmp_path}',
         '--mode=likelihood', *[f'--config.{k}={v}' for k, v in SETTINGS.items()]],
        jax_env(), round_dir)
    assert sorted(os.listdir(round_dir)) == ['round_0.npz']
    (round_dir / '.tmp-cut-short').write_bytes(b'partial')  # a write the kill cut short
    computed = record_computed_rounds(monkeypatch)
    rep = run_mode('likelihood', make_config(), str(tmp_path))
    assert computed == [[1]] and rep['rounds_resumed'] == 1
    assert sorted(os.listdir(round_dir)) == ['round_0.npz', 'round_1.npz']
    for key, value in per_example(whole_dir).items():
        np.testing.assert_array_equal(per_example(tmp_path)[key], value, err_msg=key)


@pytest.mark.parametrize('centered,offset', [(False, 8.0), (True, 7.0)])
def test_image_data_are_dequantised_with_score_sde_offset(tmp_path, centered, offset):
    """8-bit images (an .npz) under the field's exact score: dequantised as score_sde does,
    bits/dim with the offset log2(slope) + 8, and still the closed form of the model's
    density at the dequantised data."""
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / 'images.npz', images=images)
    config = make_config(**{'data.dataset': 'npz', 'data.path': str(tmp_path / 'images.npz'),
                            'data.centered': centered, 'eval.bpd_rtol': 1e-5,
                            'eval.bpd_atol': 1e-5})
    rep = run_mode('likelihood', config, str(tmp_path / 'run'))
    ex = per_example(tmp_path / 'run')
    d = 4 * 4 * 3
    assert 'dequantised' in rep['units'] and f'= {offset:g}' in rep['units']
    np.testing.assert_allclose(ex['bpd'], -ex['logp'] / (d * np.log(2)) + offset, rtol=1e-12)
    np.testing.assert_allclose(ex['nats_per_dim'], -ex['logp'] / d, rtol=1e-12)
    assert rep['closed_form']['solver_error_bpd']['max_abs'] < 1e-3
    # examples 5..7 are images 0..2 again with fresh dequantisation noise
    assert not np.array_equal(ex['logp'][:3], ex['logp'][5:8])
