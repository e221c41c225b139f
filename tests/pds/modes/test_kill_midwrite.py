"""kill -9 of ``main.py --mode=convert`` and ``--mode=stats`` while they write their outputs.

Each case starts main.py on inputs made here, watches the output folder and sends SIGKILL as
soon as a given stage of the writing is visible there (the save's staging folder, orbax's
temporary step folder, the first statistics file, ...). Afterwards every visible output (a
path without a dot-prefixed component) must be complete and equal to what a clean run writes,
only dot-prefixed temporaries may be left besides, and a rerun without --overwrite must either
complete (exit 0, outputs equal to the clean run's) or, when the killed run had already
finished its output, refuse in one 'error:' line that points to --overwrite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable

import jax
import numpy as np
import pytest

from configs.analytic import cifar10
from pds.modes import convert as convert_mode
from pds.modes import stats as stats_mode
from pds.storage import sampling_checkpoints
from tests.helpers.paths import ROOT, jax_env
from tests.helpers.score_sde_checkpoints import (
    SOURCE_STEP,
    cli_flags,
    ordered_shapes,
    random_params,
    reduced_config,
    write_flax_checkpoint,
)

pytestmark = [pytest.mark.slow,  # each case: two or three main.py runs (5-15 s)
              # orbax's background tasks may hit a closed asyncio loop after a restore
              pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')]

STATS_IMAGES = 2000  # 32x32: the spectrum takes ~0.5 s between the masks and summary.json


# ------------------------------------------------------------------ running and killing
def start(tmp_path, name: str, args: list[str]) -> subprocess.Popen:
    log = open(tmp_path / f'{name}.log', 'w')  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'main.py'), *args], cwd=ROOT,
                            env=jax_env(), stdout=log, stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300.0
              ) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()`` (polled every millisecond); False when the
    process ended first."""
    deadline = time.time() + timeout
    while proc.poll() is None:
        if ready():
            proc.send_signal(signal.SIGKILL)
            break
        assert time.time() < deadline, 'the kill point never came'
        time.sleep(0.001)
    proc.wait()
    proc.log.close()
    return proc.returncode == -signal.SIGKILL


def rerun(tmp_path, name: str, args: list[str]) -> tuple[int, str]:
    proc = start(tmp_path, name, args)
    proc.wait(timeout=300)
    proc.log.close()
    return proc.returncode, (tmp_path / f'{name}.log').read_text()


def entries(folder) -> list[str]:
    """Every path under ``folder``, relative, '/'-separated."""
    out = []
    for d, dirs, files in os.walk(folder):
        out += [os.path.relpath(os.path.join(d, n), folder) for n in dirs + files]
    return sorted(out)


def visible(folder) -> list[str]:
    return [p for p in entries(folder) if not any(c.startswith('.') for c in p.split(os.sep))]


def assert_refused_in_one_line(code: int, log: str) -> None:
    errors = [line for line in log.splitlines() if line.startswith('error:')]
    assert code == 2 and len(errors) == 1, log[-3000:]
    assert '--overwrite' in errors[0] and 'Traceback' not in log, log[-3000:]


def walks(folder, pred: Callable[[str], bool]) -> Callable[[], bool]:
    return lambda: os.path.isdir(folder) and any(pred(p) for p in entries(folder))


# ------------------------------------------------------------------ convert
@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """(source file, CLI flags, variables of a clean in-process conversion)."""
    tmp = tmp_path_factory.mktemp('convert')
    config = reduced_config('ve')
    rng = np.random.default_rng(7)
    shapes = ordered_shapes(config)
    src = types.SimpleNamespace(ema=random_params(shapes, rng), train=random_params(shapes, rng))
    path = write_flax_checkpoint(str(tmp / 'checkpoint_5'), src)
    convert_mode.run(config, str(tmp / 'clean'), source=path)
    clean = sampling_checkpoints.restore_variables(str(tmp / 'clean' / 'checkpoints'), config)
    return path, [*cli_flags(), '--mode=convert', f'--source={path}'], clean


def assert_convert_outputs(workdir, clean) -> bool:
    """Visible outputs are a complete step equal to the clean one, or nothing; True when the
    step is there."""
    ckpt_dir = workdir / 'checkpoints'
    shown = visible(ckpt_dir) if ckpt_dir.is_dir() else []
    if not shown:
        return False
    assert sorted({p.split(os.sep)[0] for p in shown}) == [str(SOURCE_STEP)], shown
    assert sampling_checkpoints.stored_steps(str(ckpt_dir)) == [SOURCE_STEP]
    got = sampling_checkpoints.restore_variables(str(ckpt_dir), reduced_config('ve'))
    a, b = jax.tree_util.tree_leaves_with_path(got), jax.tree_util.tree_leaves_with_path(clean)
    assert [k for k, _ in a] == [k for k, _ in b]
    for (key, x), (_, y) in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y),
                                      err_msg=jax.tree_util.keystr(key))
    assert sampling_checkpoints.read_metadata(str(ckpt_dir))['step'] == SOURCE_STEP
    return True


CONVERT_POINTS = {
    # the save began: its hidden staging folder is the first thing in checkpoints/
    'save-started': lambda p: True,
    # orbax is writing the step under its temporary name
    'orbax-tmp': lambda p: '.orbax-checkpoint-tmp' in p,
    # the step is in place (the process may be cleaning up or already gone)
    'step-in-place': lambda p: p == str(SOURCE_STEP),
}


@pytest.mark.parametrize('point', list(CONVERT_POINTS))
def test_convert_killed_mid_write(tmp_path, converted, point):
    _, args, clean = converted
    workdir = tmp_path / 'w'
    args = [*args, f'--workdir={workdir}']
    proc = start(tmp_path, 'killed', args)
    killed = kill_when(proc, walks(workdir / 'checkpoints', CONVERT_POINTS[point]))
    assert killed or point == 'step-in-place', (tmp_path / 'killed.log').read_text()[-3000:]
    complete = assert_convert_outputs(workdir, clean)
    if point != 'step-in-place':
        assert not complete  # the kill did land mid-write
    assert all(p.startswith('checkpoints') for p in visible(workdir)), visible(workdir)

    code, log = rerun(tmp_path, 'rerun', args)
    if complete:
        assert_refused_in_one_line(code, log)
    else:
        assert code == 0, log[-3000:]
    assert assert_convert_outputs(workdir, clean)
    if code == 0:  # the rerun deleted what the killed save left
        assert os.listdir(workdir / 'checkpoints') == [str(SOURCE_STEP)]


# ------------------------------------------------------------------ stats
@pytest.fixture(scope='module')
def stats_setup(tmp_path_factory):
    """(CLI flags, {file: content} of a clean in-process run)."""
    tmp = tmp_path_factory.mktemp('stats')
    images = np.random.default_rng(0).integers(0, 256, (STATS_IMAGES, 32, 32, 3), np.uint8)
    source = str(tmp / 'images.npz')
    np.savez(source, images=images)
    config = cifar10.get_config()
    config.sampling.pds.num_stat_images = STATS_IMAGES
    config.eval.inception_weights = '/nonexistent/inception.npz'
    stats_mode.run(config, str(tmp / 'clean'), source=source)
    clean = {name: read_stats_file(tmp / 'clean' / 'stats' / name)
             for name in os.listdir(tmp / 'clean' / 'stats')}
    args = ['--config=' + os.path.join(ROOT, 'configs', 'analytic', 'cifar10.py'), '--mode=stats',
            f'--source={source}', f'--config.sampling.pds.num_stat_images={STATS_IMAGES}',
            f'--config.eval.inception_weights={config.eval.inception_weights}']
    return args, clean


def read_stats_file(path) -> object:
    name = os.path.basename(path)
    if name.endswith('.json'):
        return json.loads(open(path).read())
    if name.endswith('.npz'):
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    return np.load(path)


def assert_stats_outputs(workdir, clean) -> list[str]:
    """Visible files are whole and equal to the clean run's; dot-prefixed ones are the
    writer's temporaries. Returns the visible file names."""
    out_dir = workdir / 'stats'
    names = sorted(os.listdir(out_dir)) if out_dir.is_dir() else []
    shown = [n for n in names if not n.startswith('.')]
    assert all(n.startswith('.tmp-') for n in names if n.startswith('.')), names
    assert set(shown) <= set(clean), shown
    for name in shown:
        got, want = read_stats_file(out_dir / name), clean[name]
        if isinstance(want, dict) and name.endswith('.npz'):
            assert sorted(got) == sorted(want), name
            for k in want:
                np.testing.assert_array_equal(got[k], want[k], err_msg=f'{name}:{k}')
        elif isinstance(want, np.ndarray):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            assert got == want, name
    return shown


STATS_POINTS = {
    'first-file': lambda names: bool(names),  # a .tmp- file or the first mask
    'masks-written': lambda names: 'space_mask.npy' in names,
    'spectrum-written': lambda names: 'spectrum.npz' in names,
}


@pytest.mark.parametrize('point', list(STATS_POINTS))
def test_stats_killed_mid_write(tmp_path, stats_setup, point):
    args, clean = stats_setup
    workdir = tmp_path / 'w'
    args = [*args, f'--workdir={workdir}']
    out_dir = workdir / 'stats'
    proc = start(tmp_path, 'killed', args)
    killed = kill_when(proc, lambda: out_dir.is_dir() and STATS_POINTS[point](
        os.listdir(out_dir)))
    assert killed or point == 'spectrum-written', (tmp_path / 'killed.log').read_text()[-3000:]
    shown = assert_stats_outputs(workdir, clean)
    if point != 'spectrum-written':
        assert 'summary.json' not in shown  # the kill did land mid-write
    assert all(p == 'stats' or p.startswith('stats' + os.sep) for p in visible(workdir))

    code, log = rerun(tmp_path, 'rerun', args)
    if 'summary.json' in shown:  # the killed run had finished: a new one needs --overwrite
        assert_refused_in_one_line(code, log)
    else:
        assert code == 0, log[-3000:]
    assert sorted(assert_stats_outputs(workdir, clean)) == sorted(clean)
