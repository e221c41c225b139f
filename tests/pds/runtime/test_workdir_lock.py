"""One run per workdir (issue 29): the lock with real processes, and ``main.py`` refusing a
second run in under 2 s with one line naming the holder, exit 2 and nothing touched."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from pds.runtime.errors import ConfigError
from pds.runtime.workdir_lock import LOCK_NAME, WorkdirLock
from tests.helpers.paths import ROOT, jax_env
from tests.test_reliability import error_line, tree_hash

FIELD = os.path.join(ROOT, 'configs/analytic/field_16.py')
HOLD = textwrap.dedent("""
    import sys, time
    from pds.runtime.workdir_lock import WorkdirLock
    lock = WorkdirLock(sys.argv[1]).acquire()
    print('held', flush=True)
    time.sleep(float(sys.argv[2]))
    lock.release()
""")


def holder(workdir, seconds: float = 120.0) -> subprocess.Popen:
    """A second process holding the workdir's lock (returns once it holds it)."""
    proc = subprocess.Popen([sys.executable, '-c', HOLD, str(workdir), str(seconds)],
                            stdout=subprocess.PIPE, text=True, env=jax_env())
    assert proc.stdout.readline().strip() == 'held'
    return proc


def main_py(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, os.path.join(ROOT, 'main.py'), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=jax_env(1))


def timed_main_py(*args: str) -> tuple[subprocess.CompletedProcess, float, float]:
    """(result, wall seconds, CPU seconds of the child): the refusal must take under 2 s of
    CPU (about 0.2 s on an idle machine); wall time also counts the waits of a loaded host."""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    res = main_py(*args)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return res, wall, (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)


def test_a_second_process_cannot_take_a_held_lock_and_learns_the_holder(tmp_path):
    proc = holder(tmp_path)
    try:
        with pytest.raises(ConfigError) as err:
            WorkdirLock(str(tmp_path)).acquire()
        assert f'pid {proc.pid} on host {socket.gethostname()}' in str(err.value)
        assert str(err.value).startswith(f"invalid --workdir='{tmp_path}'")
    finally:
        proc.kill()
        proc.wait()
    # kill -9 leaves the file but the kernel dropped the lock: the next run takes it
    assert (tmp_path / LOCK_NAME).exists()
    with WorkdirLock(str(tmp_path)) as lock:
        assert (tmp_path / LOCK_NAME).read_text().split()[0] == str(os.getpid())
        assert lock.fd is not None
    assert not (tmp_path / LOCK_NAME).exists()  # released: the file is gone


def test_release_removes_the_folders_it_created_when_empty(tmp_path):
    workdir = tmp_path / 'a' / 'b'
    with WorkdirLock(str(workdir)):
        assert workdir.is_dir()
    assert not (tmp_path / 'a').exists()
    with WorkdirLock(str(workdir)):
        (workdir / 'out.txt').write_text('x')
    assert (workdir / 'out.txt').exists() and not (workdir / LOCK_NAME).exists()


def test_a_waiter_on_a_deleted_lock_file_does_not_share_the_lock(tmp_path):
    """A run that opened the lock file before the holder deleted it must not hold a lock on
    the deleted file while a third run locks the new one (the inode check)."""
    first = WorkdirLock(str(tmp_path)).acquire()
    stale = os.open(tmp_path / LOCK_NAME, os.O_RDWR)  # opened before the release
    first.release()
    import fcntl

    fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # succeeds on the deleted inode ...
    second = WorkdirLock(str(tmp_path)).acquire()  # ... yet the path's new file is free
    try:
        assert second._still_at_path(second.fd)
        with pytest.raises(ConfigError, match='another run holds'):
            WorkdirLock(str(tmp_path)).acquire()
    finally:
        second.release()
        os.close(stale)


def test_unwritable_workdir_is_one_config_error(tmp_path):
    target = tmp_path / 'file'
    target.write_text('x')
    with pytest.raises(ConfigError, match='a writable directory'):
        WorkdirLock(str(target)).acquire()


@pytest.mark.slow
def test_main_refuses_a_locked_workdir_fast_and_runs_after_the_holder_is_killed(tmp_path):
    workdir = tmp_path / 'w'
    workdir.mkdir()
    (workdir / 'bench').mkdir()
    (workdir / 'bench' / '.tmp-killed').write_bytes(b'half a report')  # a killed run's file
    (workdir / 'keep.txt').write_text('an earlier file')
    proc = holder(workdir)
    try:
        before = tree_hash(workdir)
        res, wall, cpu = timed_main_py(f'--config={FIELD}', f'--workdir={workdir}',
                                       '--config.sampling.steps=2',
                                       '--config.eval.num_samples=4', '--config.eval.batch_size=4')
        assert res.returncode == 2, res.stderr[-2000:]
        line = error_line(res)
        assert f'pid {proc.pid} on host {socket.gethostname()}' in line
        assert cpu < 2.0 and wall < 10.0, (cpu, wall)
        assert tree_hash(workdir) == before
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    res = main_py(f'--config={FIELD}', f'--workdir={workdir}', '--config.sampling.steps=2',
                  '--config.eval.num_samples=4', '--config.eval.batch_size=4')
    assert res.returncode == 0, res.stderr[-2000:]
    assert (workdir / 'metrics.json').exists() and (workdir / 'keep.txt').exists()
    assert not (workdir / 'bench' / '.tmp-killed').exists()  # the killed run's leftover
    assert not (workdir / LOCK_NAME).exists()


@pytest.mark.slow
def test_two_concurrent_runs_the_second_refuses_the_first_matches_a_solo_run(tmp_path):
    """The issue's reproduction: run B starts while run A samples in the same workdir."""
    common = [f'--config={FIELD}', '--mode=sample', '--config.eval.batch_size=4',
              '--config.sampling.steps=100']
    a_args = ['--config.seed=1', '--config.eval.num_samples=8']
    solo = tmp_path / 'solo'
    assert main_py(*common, f'--workdir={solo}', *a_args).returncode == 0
    shared = tmp_path / 'shared'
    a = subprocess.Popen([sys.executable, os.path.join(ROOT, 'main.py'), *common,
                          f'--workdir={shared}', *a_args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=jax_env(1))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until A holds the lock
            lock = shared / LOCK_NAME
            if lock.exists() and lock.read_text().split()[:1] == [str(a.pid)]:
                break
            time.sleep(0.05)
        b, wall, cpu = timed_main_py(*common, f'--workdir={shared}', '--config.seed=2',
                                     '--config.eval.num_samples=4')
        assert a.poll() is None, 'run A ended before run B was refused: make it longer'
        assert b.returncode == 2, b.stderr[-2000:]
        assert f'pid {a.pid}' in error_line(b)
        assert cpu < 2.0 and wall < 10.0, (cpu, wall)
    finally:
        _, err = a.communicate(timeout=300)
    assert a.returncode == 0, err[-2000:]
    solo_files, shared_files = tree_hash(solo), tree_hash(shared)
    assert sorted(solo_files) == sorted(shared_files)
    samples = [k for k in solo_files if k.endswith('.npz')]
    assert samples and all(solo_files[k] == shared_files[k] for k in samples)

    def untimed(path):  # metrics.json less its wall-clock timings
        metrics = json.loads(path.read_text())
        return {k: v for k, v in metrics.items() if 'seconds' not in k}

    assert untimed(solo / 'metrics.json') == untimed(shared / 'metrics.json')


@pytest.mark.slow
def test_a_multi_process_job_on_a_locked_workdir_stops_on_every_process(tmp_path):
    """Process 0 tries the lock; the others learn that it is held and stop alike (exit 2)."""
    from tests.helpers.multiprocess import run_job

    proc = holder(tmp_path)
    try:
        before = tree_hash(tmp_path)
        job = run_job([f'--config={FIELD}', f'--workdir={tmp_path}', '--mode=sample',
                       '--config.sampling.steps=2', '--config.eval.num_samples=4',
                       '--config.eval.batch_size=2'], processes=2, devices=1, timeout=300)
        assert tree_hash(tmp_path) == before
    finally:
        proc.kill()
        proc.wait()
    lines = [[ln for ln in r.stderr.splitlines() if 'error:' in ln] for r in job]
    for r, found in zip(job, lines, strict=True):
        assert r.returncode == 2, r.explain()
        assert len(found) == 1 and 'Traceback' not in r.stderr, r.explain()
    assert f'pid {proc.pid} on host {socket.gethostname()}' in lines[0][0]
    assert 'process 0 could not take its lock' in lines[1][0]


@pytest.mark.parametrize('argv,workdir', [
    (['main.py', '--config=c.py', '--workdir=/w'], '/w'),
    (['main.py', '--workdir', '/w', '--config=c.py'], '/w'),
    (['main.py', '-workdir=/w'], '/w'),
    (['main.py', '--config=c.py'], None),  # absl reports the missing flag
    (['main.py', '--workdir=/w', '--distributed'], None),  # process 0 locks after joining
    (['main.py', '--workdir=/w', '--distributed=false'], None),
    (['main.py', '--flagfile=f', '--workdir=/w'], None),  # the flag file may set it again
    (['main.py', '--workdir=/a', '--workdir=/b'], None),
    (['main.py', '--workdir='], None),
    (['main.py', '--', '--workdir=/w'], None),  # positional
    (['main.py', '--config.eval.ref_stats=--workdir=/x', '--workdir=/w'], '/w'),
])
def test_the_workdir_is_read_from_the_command_line_only_when_unambiguous(argv, workdir):
    from pds.runtime.workdir_lock import workdir_from_argv

    assert workdir_from_argv(argv) == workdir


def test_holds_tracks_this_process_locks(tmp_path):
    from pds.runtime.workdir_lock import holds

    lock = WorkdirLock(str(tmp_path / 'w')).acquire()
    assert holds(str(tmp_path / 'w')) and holds(str(tmp_path / 'w' / '.'))
    lock.release()
    assert not holds(str(tmp_path / 'w'))
