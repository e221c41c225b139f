"""Training: optimizer semantics, device invariance, kill-and-resume, checkpoint atomicity."""

import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pds.modes.train import plan_from_config
from pds.runtime.errors import ConfigError
from pds.storage.training_checkpoints import TrainCheckpoints
from pds.training.train import TrainState, make_optimizer
from tests.helpers.paths import ROOT, jax_env
from tests.helpers.train_driver import RUN_STEPS, run_config, tiny_config

DRIVER = os.path.join(ROOT, 'tests', 'helpers', 'train_driver.py')


def test_optimizer_is_score_sde_adam_with_warmup_and_clipping():
    config = tiny_config()
    config.optim.update(lr=0.1, warmup=4, grad_clip=1.0, beta1=0.9, eps=1e-8)
    tx = make_optimizer(config)
    params = {'w': jnp.zeros(3)}
    state = tx.init(params)
    g = {'w': jnp.asarray([3.0, 4.0, 0.0])}  # norm 5: clipped to norm 1
    m = v = np.zeros(3)
    for s in range(6):
        updates, state = tx.update(g, state, params)
        gc = np.array([3.0, 4.0, 0.0]) / 5.0
        m, v = 0.9 * m + 0.1 * gc, 0.999 * v + 0.001 * gc**2
        mhat, vhat = m / (1 - 0.9 ** (s + 1)), v / (1 - 0.999 ** (s + 1))
        lr = 0.1 * min(s / 4, 1.0)  # score_sde: lr * min(step / warmup, 1), step from 0
        np.testing.assert_allclose(updates['w'], -lr * mhat / (np.sqrt(vhat) + 1e-8),
                                   rtol=1e-5, atol=1e-9)
        params = optax.apply_updates(params, updates)


def test_plan_requires_event_frequencies_on_call_boundaries():
    config = tiny_config()
    config.training.snapshot_freq = 5  # n_jitted_steps = 2
    with pytest.raises(ConfigError, match=r'training\.snapshot_freq=5'):
        plan_from_config(config)


@pytest.mark.slow
def test_training_steps_same_on_1_2_and_4_devices(tmp_path):
    """Losses bit-identical; parameters bit-identical on 2 and 4 devices (fixed-order gradient
    sum of 4 microbatches) and within rounding on 1 device (XLA's one-partition pipeline)."""
    res = subprocess.run([sys.executable, DRIVER, 'devices'],
                         env=jax_env(4, default_codegen=True),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and 'ok' in res.stdout, res.stdout + res.stderr[-3000:]


def _start(workdir, pause, tmp_path):
    return subprocess.Popen([sys.executable, DRIVER, 'run', str(workdir), str(pause)],
                            env=jax_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err[-3000:]
    return out


@pytest.mark.slow
def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path):
    full, killed = tmp_path / 'full', tmp_path / 'killed'
    out = _finish(_start(full, 0.0, tmp_path))
    assert 'start_step 0' in out
    proc = _start(killed, 0.4, tmp_path)  # slowed down so that it can be killed mid-run
    preemption = killed / 'train_checkpoints' / 'preemption'
    deadline = time.time() + 400
    while not (preemption.is_dir() and any(p.name.isdigit() for p in preemption.iterdir())):
        assert proc.poll() is None and time.time() < deadline, 'no preemption checkpoint'
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps = TrainCheckpoints(str(killed)).candidates()
    assert steps and steps[0][0] < RUN_STEPS, steps
    out = _finish(_start(killed, 0.0, tmp_path))
    assert f'start_step {steps[0][0]}' in out, out
    a, b = np.load(full / 'final.npz'), np.load(killed / 'final.npz')
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # numbered snapshots kept, one preemption checkpoint, EMA exported for --mode=sample
    ckpts = TrainCheckpoints(str(full))
    assert ckpts.steps('snapshots') == [RUN_STEPS // 2, RUN_STEPS]
    assert len(ckpts.steps('preemption')) == 1
    from pds.storage.sampling_checkpoints import restore_variables, stored_steps

    assert stored_steps(str(full / 'checkpoints')) == [RUN_STEPS // 2, RUN_STEPS]
    variables = restore_variables(str(full / 'checkpoints'), run_config())
    assert jax.tree_util.tree_structure(variables['params']) is not None


def test_interrupted_save_is_never_listed(tmp_path):
    """A step folder whose save did not finalize (orbax's tmp name) is not a checkpoint: the
    store lists, and a restart resumes from, the newest finalized step; orbax's own finalize
    is the rename, which we check by copying a complete step under the tmp name, damaged."""
    root = tmp_path / 'w' / 'train_checkpoints' / 'preemption'
    ckpts = TrainCheckpoints(str(tmp_path / 'w'))
    a = jnp.arange(4.0)
    ckpts.save(TrainState(jnp.int32(8), {'a': a}, (), {'a': a}, {}), 'preemption', {'seed': 0})
    assert ckpts.candidates() == [(8, 'preemption')]
    partial = root / '12.orbax-checkpoint-tmp-1700000000000000'
    shutil.copytree(root / '8', partial)
    for f in partial.rglob('*'):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    assert ckpts.candidates() == [(8, 'preemption')]
    assert partial.exists() and TrainCheckpoints(str(tmp_path / 'w')).candidates() == [
        (8, 'preemption')]
    assert not partial.exists()  # a restart deletes the unfinished save
    ckpts.save(TrainState(jnp.int32(16), {'a': a}, (), {'a': a}, {}), 'preemption', {'seed': 0})
    assert ckpts.candidates() == [(16, 'preemption')]  # the older one goes after the save
    template = TrainState(jnp.int32(0), {'a': a}, (), {'a': a}, {})
    restored, meta = ckpts.restore_latest(template, None)
    assert int(restored.step) == 16 and meta['step'] == 16
