"""Checkpoint import (``--mode=convert``) and the checkpoint store.

Source files are written (tests/helpers/score_sde_checkpoints.py) in the released formats, from
random weights on a reduced CIFAR-10 network (nf 16, two levels, one block per level, attention
at 16x16):
- score_sde Flax: msgpack of the old training state {step, optimizer: {target, state}, lr,
  model_state, ema_rate, params_ema, rng};
- score_sde_pytorch: torch.save({'optimizer', 'model', 'ema', 'step'}) with DataParallel keys
  'module.all_modules.<i>.<sub>.<param>', OIHW conv weights, (out, in) Linear weights,
  GroupNorm 'weight', and the EMA shadow list without the frozen Fourier 'W'.
The training weights ('optimizer.target' / 'model') differ from the EMA weights, so a round
trip that matches the EMA network also shows that the EMA copy was taken.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import jax
import numpy as np
import pytest

from pds.method import masks
from pds.modes import convert as convert_mode
from pds.runtime.errors import ConfigError
from pds.storage import sampling_checkpoints
from tests.helpers.paths import ROOT, jax_env
from tests.helpers.score_sde_checkpoints import (
    HAS_TORCH,
    SOURCE_STEP,
    Source,
    assert_converted,
    cli_flags,
    get_source,
    reduced_config,
    write_flax_checkpoint,
    write_torch_checkpoint,
)

# After a failed restore, orbax's background tasks may hit a closed asyncio loop; pytest
# reports that later, in whichever test the garbage collector runs.
pytestmark = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason='torch is not installed '
                                 '(pip install -r requirements-test.txt)')


@pytest.fixture(scope='module')
def sources() -> dict[str, Source]:
    return {}


# ------------------------------------------------------------------ round trips
@pytest.mark.slow
@pytest.mark.parametrize('kind', ['ve', 'vp'])
def test_flax_checkpoint_round_trip(tmp_path, sources, kind, capsys):
    src = get_source(sources, kind)
    path = write_flax_checkpoint(str(tmp_path / 'checkpoint_26'), src)
    summary = convert_mode.run(src.config, str(tmp_path / 'work'), source=path)
    assert summary['step'] == SOURCE_STEP and summary['format'] == 'score_sde flax msgpack'
    assert f'step {SOURCE_STEP}' in capsys.readouterr().out
    ckpt_dir = str(tmp_path / 'work' / 'checkpoints')
    assert sampling_checkpoints.latest_step(ckpt_dir) == SOURCE_STEP
    assert sampling_checkpoints.read_metadata(ckpt_dir)['step'] == SOURCE_STEP
    variables = sampling_checkpoints.restore_variables(ckpt_dir, src.config)
    assert summary['params'] == sum(v.size for v in jax.tree_util.tree_leaves(variables))
    assert_converted(src, variables)


@pytest.mark.slow
@needs_torch
@pytest.mark.parametrize('kind,gaps,legacy', [('ve', (), False), ('vp', (), False),
                                              ('ve', (5, 9, 10), True)])
def test_torch_checkpoint_round_trip(tmp_path, sources, kind, gaps, legacy):
    src = get_source(sources, kind)
    path = write_torch_checkpoint(str(tmp_path / 'checkpoint_8.pth'), src, gaps, legacy=legacy)
    summary = convert_mode.run(src.config, str(tmp_path / 'work'), source=path)
    assert summary['step'] == SOURCE_STEP and summary['format'].startswith('score_sde_pytorch')
    variables = sampling_checkpoints.restore_variables(str(tmp_path / 'work' / 'checkpoints'),
                                              src.config)
    assert_converted(src, variables)


@pytest.mark.slow
def test_format_is_detected_by_content(tmp_path, sources):
    src = get_source(sources, 've')
    path = write_flax_checkpoint(str(tmp_path / 'weights.pth'), src)  # misleading name
    assert convert_mode.detect_format(path) == 'flax'
    convert_mode.run(src.config, str(tmp_path / 'work'), source=path)


@pytest.mark.slow
def test_cli_convert_and_error_exit(tmp_path, sources):
    src = get_source(sources, 've')
    path = write_flax_checkpoint(str(tmp_path / 'checkpoint_3'), src)
    env = jax_env()
    base = [sys.executable, os.path.join(ROOT, 'main.py'), *cli_flags(), '--mode=convert']
    res = subprocess.run([*base, f'--workdir={tmp_path / "work"}', f'--source={path}'],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f'{sum(v.size for v in jax.tree_util.tree_leaves(src.ema)):,} parameters' in res.stdout
    variables = sampling_checkpoints.restore_variables(str(tmp_path / 'work' / 'checkpoints'),
                                              src.config)
    assert_converted(src, variables)
    bad = tmp_path / 'notes.txt'
    bad.write_text('not a checkpoint\n')
    res = subprocess.run([*base, f'--workdir={tmp_path / "work2"}', f'--source={bad}'],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith('error: invalid --source=') and 'msgpack' in lines[-1]


# ------------------------------------------------------------------ errors
MISMATCH = ('parameter GaussianFourierProjection_0/W {}has shape (16,) in the file but (8,) '
            'for this config')


@pytest.mark.slow
def test_flax_mismatched_config_names_path_and_shapes(tmp_path, sources):
    path = write_flax_checkpoint(str(tmp_path / 'checkpoint_1'), get_source(sources, 've'))
    with pytest.raises(ConfigError) as err:
        convert_mode.run(reduced_config('ve', **{'model.nf': 8}), str(tmp_path / 'w'),
                        source=path)
    assert MISMATCH.format('') in str(err.value) and err.value.field == '--source'
    assert sampling_checkpoints.stored_steps(str(tmp_path / 'w' / 'checkpoints')) == []


@pytest.mark.slow
@needs_torch
def test_torch_mismatched_config_names_path_and_shapes(tmp_path, sources):
    path = write_torch_checkpoint(str(tmp_path / 'c.pth'), get_source(sources, 've'))
    with pytest.raises(ConfigError) as err:
        convert_mode.run(reduced_config('ve', **{'model.nf': 8}), str(tmp_path / 'w'),
                        source=path)
    assert MISMATCH.format('(all_modules.0.W) ') in str(err.value)
    deeper = reduced_config('ve', **{'model.num_res_blocks': 2})
    with pytest.raises(ConfigError, match=r'parameter \S+ .*(missing|lacks|in the file but)'):
        convert_mode.run(deeper, str(tmp_path / 'w'), source=path)


@pytest.mark.slow
def test_restore_checks_tree_against_config(tmp_path, sources):
    src = get_source(sources, 've')
    ckpt_dir = str(tmp_path / 'checkpoints')
    sampling_checkpoints.save_variables(ckpt_dir, {'params': src.ema}, step=3)
    with pytest.raises(ConfigError) as err:
        sampling_checkpoints.restore_variables(ckpt_dir, reduced_config('ve', **{'model.nf': 8}))
    msg = str(err.value)
    assert msg.startswith(f"invalid checkpoint='{ckpt_dir}/3': parameter ")
    assert 'in the file but' in msg and 'for this config' in msg and '\n' not in msg
    with pytest.raises(ConfigError, match='checkpoint step'):
        sampling_checkpoints.restore_variables(ckpt_dir, src.config, step=4)
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(ConfigError, match='no complete step'):
        sampling_checkpoints.restore_variables(str(empty), src.config)


@pytest.mark.parametrize('damage', ['data', 'metadata'])
def test_damaged_store_is_config_error(tmp_path, sources, damage):
    src = get_source(sources, 've')
    ckpt_dir = tmp_path / 'checkpoints'
    sampling_checkpoints.save_variables(str(ckpt_dir), {'params': src.ema}, step=3)
    stored = ckpt_dir / '3' / 'variables'
    if damage == 'metadata':
        (stored / '_METADATA').unlink()
    else:
        for f in stored.rglob('*'):
            if f.is_file() and f.parent.name == 'd':
                f.write_bytes(f.read_bytes()[:10])
    # the manifest of sha256 sums names the damaged file before orbax reads it
    with pytest.raises(ConfigError, match=r'sha256sums\.json.*the checkpoint is damaged') as err:
        sampling_checkpoints.restore_variables(str(ckpt_dir), src.config)
    assert '\n' not in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize('fmt', ['flax', pytest.param('torch', marks=needs_torch)])
def test_truncated_file(tmp_path, sources, fmt):
    src = get_source(sources, 've')
    full = str(tmp_path / 'full')
    (write_flax_checkpoint if fmt == 'flax' else write_torch_checkpoint)(full, src)
    data = (tmp_path / 'full').read_bytes()
    cut = tmp_path / 'cut'
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(ConfigError, match='truncated or corrupt') as err:
        convert_mode.run(src.config, str(tmp_path / 'w'), source=str(cut))
    assert '\n' not in str(err.value)
    assert sampling_checkpoints.stored_steps(str(tmp_path / 'w' / 'checkpoints')) == []


def test_unknown_formats(tmp_path):
    config = reduced_config('ve')
    text = tmp_path / 'notes.txt'
    text.write_text('hello')
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    npz = tmp_path / 'arrays.npz'
    np.savez(npz, a=np.zeros(3))
    for path, hint in [(text, 'starting with bytes 68656c6c'), (empty, 'an empty file'),
                       (npz, 'without data.pkl'), (tmp_path, 'a directory'),
                       (tmp_path / 'absent', 'missing')]:
        with pytest.raises(ConfigError) as err:
            convert_mode.run(config, str(tmp_path / 'w'), source=str(path))
        msg = str(err.value)
        assert msg.startswith('invalid --source=') and hint in msg and '\n' not in msg
        assert 'score_sde' in msg
    with pytest.raises(ConfigError, match='--source'):
        convert_mode.run(config, str(tmp_path / 'w'), source=None)
    assert not (tmp_path / 'w' / 'checkpoints').exists()


class RunsShell:
    """Pickles as a call of os.system: loading it with plain pickle would run the command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@needs_torch
@pytest.mark.parametrize('container', ['zip', 'legacy', 'pickle'])
def test_malicious_pickle_is_refused_not_run(tmp_path, container):
    import torch

    marker = tmp_path / 'pwned'
    payload = {'model': RunsShell(f'touch {marker}'), 'step': 1}
    path = str(tmp_path / 'evil.pth')
    if container == 'pickle':
        with open(path, 'wb') as f:
            pickle.dump(payload, f, protocol=2)
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=container == 'zip')
    assert not marker.exists()
    with pytest.raises(ConfigError) as err:
        convert_mode.run(reduced_config('ve'), str(tmp_path / 'w'), source=path)
    assert not marker.exists()
    msg = str(err.value)
    assert 'refused' in msg and 'Nothing was run' in msg and '\n' not in msg


@needs_torch
def test_torch_ema_must_match_model(tmp_path, sources):
    path = write_torch_checkpoint(str(tmp_path / 'c.pth'), get_source(sources, 've'),
                                  drop_shadow=1)
    with pytest.raises(ConfigError, match='shadow parameter'):
        convert_mode.run(reduced_config('ve'), str(tmp_path / 'w'), source=path)


def test_missing_torch_gives_install_hint(tmp_path, monkeypatch):
    path = tmp_path / 'legacy.pth'
    path.write_bytes(b'\x80\x02\x8a\x0alegacy')
    monkeypatch.setitem(sys.modules, 'torch', None)  # import torch raises ImportError
    with pytest.raises(ConfigError, match=r'pip install torch==2\.13\.0'):
        convert_mode.run(reduced_config('ve'), str(tmp_path / 'w'), source=str(path))


@pytest.mark.slow
def test_refuses_to_overwrite_unless_told(tmp_path, sources):
    src = get_source(sources, 've')
    path = write_flax_checkpoint(str(tmp_path / 'checkpoint_1'), src)
    work = str(tmp_path / 'work')
    ckpt_dir = os.path.join(work, 'checkpoints')
    sampling_checkpoints.save_variables(ckpt_dir, {'params': src.train}, step=SOURCE_STEP)
    sampling_checkpoints.save_variables(ckpt_dir, {'params': src.train}, step=9)
    with pytest.raises(ConfigError, match='--overwrite'):
        convert_mode.run(src.config, work, source=path)
    with pytest.raises(ConfigError, match='--overwrite'):
        sampling_checkpoints.save_variables(ckpt_dir, {'params': src.ema}, step=9)
    kept = sampling_checkpoints.restore_variables(ckpt_dir, src.config)
    np.testing.assert_array_equal(kept['params']['Conv_0']['kernel'],
                                  src.train['Conv_0']['kernel'])
    convert_mode.run(src.config, work, overwrite=True, source=path)
    assert sampling_checkpoints.stored_steps(ckpt_dir) == [SOURCE_STEP]
    assert not [n for n in os.listdir(ckpt_dir) if n.startswith('.')]
    assert_converted(src, sampling_checkpoints.restore_variables(ckpt_dir, src.config))


# ------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_convert_then_sample_with_pds(tmp_path, sources):
    """CLI sampling from a converted checkpoint with a PDS frequency mask equals in-process
    sampling from the source's EMA weights on the same seed, and differs from sampling with
    other weights."""
    from pds.modes import sample as sample_mode

    src = get_source(sources, 've')
    path = write_flax_checkpoint(str(tmp_path / 'checkpoint_2'), src)
    images = np.random.default_rng(0).uniform(size=(8, 32, 32, 3))
    mask = str(tmp_path / 'freq.npy')
    masks.save_mask(mask, masks.frequency_statistic(images))
    sampling = {'sampling.precondition': 'pds', 'sampling.pds.freq_mask': mask,
                'sampling.steps': 2, 'sampling.save_raw': True, 'eval.num_samples': 2,
                'eval.batch_size': 2}
    converted = tmp_path / 'converted'
    convert_mode.run(src.config, str(converted), source=path)
    res = subprocess.run([sys.executable, os.path.join(ROOT, 'main.py'), *cli_flags(),
                          *[f'--config.{k}={v}' for k, v in sampling.items()],
                          f'--workdir={converted}', '--mode=sample'],
                         cwd=ROOT, env=jax_env(),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((converted / 'metrics.json').read_text())
    assert metrics['iterations'] == 2 and metrics['nfe'] == 4 and metrics['num_samples'] == 2
    assert metrics['sampler']['precondition'] == 'pds'
    assert metrics['sampler']['pds']['freq_mask'] == mask
    out = np.load(converted / 'samples' / 'samples_0.npz')
    assert out['samples'].shape == (2, 32, 32, 3) and out['samples'].dtype == np.uint8

    def sample_with(params, name):
        workdir = tmp_path / name
        sampling_checkpoints.save_variables(str(workdir / 'checkpoints'), {'params': params},
                                            step=1)
        sample_mode.run(reduced_config('ve', **sampling), str(workdir))
        return np.load(workdir / 'samples' / 'samples_0.npz')['raw']

    raw = out['raw']
    scale = np.max(np.abs(raw))
    np.testing.assert_allclose(raw, sample_with(src.ema, 'source'), atol=1e-4 * scale)
    assert np.max(np.abs(raw - sample_with(src.train, 'other'))) > 1e-2 * scale
