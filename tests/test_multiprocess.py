"""Multi-process jobs on localhost: 2 processes x 2 CPU devices against 1 process x 4 devices
(same global mesh size), and a job that loses a process."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import jax
import numpy as np
import pytest

from pds.experiment.rounds import load_samples
from tests.helpers.multiprocess import ROOT, run_job, run_single, start_job, wait_all

pytestmark = pytest.mark.slow  # left out of `make test-fast`

SAMPLE = [f'--config={ROOT}/configs/analytic/cifar10.py', '--mode=sample',
          '--config.data.image_size=8', '--config.eval.batch_size=8',
          '--config.eval.num_samples=20', '--config.sampling.steps=3',
          '--config.sampling.pds.num_stat_images=8', '--config.sampling.save_raw=True']


def test_sampling_2x2_processes_equals_1x4(tmp_path):
    one, two = tmp_path / 'one', tmp_path / 'two'
    single = run_single([*SAMPLE, f'--workdir={one}'], devices=4)
    assert single.returncode == 0, single.explain()
    job = run_job([*SAMPLE, f'--workdir={two}'], processes=2, devices=2)
    assert all(r.returncode == 0 for r in job), '\n'.join(r.explain() for r in job)
    # each process wrote its own rows of every round; names never collide
    names = sorted(os.listdir(two / 'samples'))
    assert names == sorted(['grid.png'] + [f'samples_{k}_p{i}of2.npz' for k in range(3)
                                           for i in range(2)]), names
    for key in ('samples', 'raw'):
        i1, a = load_samples(str(one), key)
        i2, b = load_samples(str(two), key)
        assert len(a) == 20 and np.array_equal(i1, i2)
        np.testing.assert_array_equal(a, b, err_msg=key)
    m1 = json.loads((one / 'metrics.json').read_text())
    m2 = json.loads((two / 'metrics.json').read_text())
    assert (m1['processes'], m2['processes'], m1['devices'], m2['devices']) == (1, 2, 4, 4)
    assert m1['num_samples'] == m2['num_samples'] == 20
    assert (one / 'samples' / 'grid.png').read_bytes() == (two / 'samples' /
                                                          'grid.png').read_bytes()
    # progress bars and logs come from process 0 only
    assert 'sampling' in job[0].stderr and 'sampling' not in job[1].stderr


def test_eval_report_complete_with_2_processes(tmp_path):
    from tests.helpers.inception_files import random_weights

    weights = tmp_path / 'inception.npz'
    random_weights(weights)
    args = [f'--config={ROOT}/configs/analytic/cifar10.py', '--mode=eval',
            f'--workdir={tmp_path / "run"}', '--config.data.image_size=8',
            '--config.eval.batch_size=4', '--config.eval.num_samples=8',
            '--config.eval.inception_batch_size=4', '--config.eval.is_splits=2',
            '--config.eval.kid_num_subsets=10', '--config.sampling.steps=3',
            '--config.sampling.pds.num_stat_images=8',
            f'--config.eval.inception_weights={weights}']
    job = run_job(args, processes=2, devices=2)
    assert all(r.returncode == 0 for r in job), '\n'.join(r.explain() for r in job)
    eval_dir = tmp_path / 'run' / 'eval'
    report = json.loads((eval_dir / 'report_exact.json').read_text())
    assert report['num_samples'] == 8 and report['rounds'] == 2
    assert report['processes'] == 2 and report['devices'] == 4
    assert np.isfinite(report['inception_score']['mean'])
    parts = sorted(os.listdir(eval_dir / 'exact'))
    assert parts == [f'round_{k}_p{i}of2.npz' for k in range(2) for i in range(2)], parts
    seen = np.concatenate([np.load(eval_dir / 'exact' / p)['index'] for p in parts])
    assert sorted(seen.tolist()) == list(range(8))


def _variables(workdir, step):
    from pds.storage.sampling_checkpoints import restore_variables
    from tests.helpers.tiny_train_config import get_config

    return jax.tree_util.tree_leaves(restore_variables(str(workdir / 'checkpoints'),
                                                       get_config(), step))


def _metrics(workdir):
    return [json.loads(s) for s in (workdir / 'train_metrics.jsonl').read_text().splitlines()]


def test_training_2x2_processes_equals_1_process(tmp_path):
    """2 processes x 2 devices against 1 process with 2 devices (the same 4 gradient
    microbatches, the same fusion partitions: XLA:CPU splits loop fusions into max(cores, CPU
    devices in the process) partitions) must match bit for bit. (1 x 4 against 2 x 2, equal
    only where the partitions agree, is benchmarks/cpu_layout_check.py's question, asked by
    its smoke test.) The job then resumes from its step-4 checkpoint to step 6 and must equal
    the 1 x 2 run that trained to step 6 without a stop."""
    args = [f'--config={ROOT}/tests/helpers/tiny_train_config.py', '--mode=train']
    job = run_job([*args, f'--workdir={tmp_path / "job"}', '--config.sampling.steps=3',
                   '--config.training.snapshot_sampling=True'], processes=2, devices=2)
    assert all(r.returncode == 0 for r in job), '\n'.join(r.explain() for r in job)
    assert (tmp_path / 'job' / 'train_samples' / 'step_4.png').is_file()
    # 1 x 2 trains on to step 6 in one go (snapshots at 4 and at the end)
    single = run_single([*args, f'--workdir={tmp_path / "two"}', '--config.training.n_iters=6',
                         '--config.training.grad_shards=4'], devices=2)
    assert single.returncode == 0, single.explain()
    job_vars, two = (_variables(tmp_path / d, 4) for d in ('job', 'two'))
    assert len(job_vars) == len(two) > 10
    for x, y in zip(job_vars, two, strict=True):
        np.testing.assert_array_equal(x, y)
    losses = [[m['loss'] for m in _metrics(tmp_path / d) if 'loss' in m] for d in ('job', 'two')]
    assert losses[0] == losses[1][:2] and len(losses[0]) == 2  # process 0 wrote once
    # resume the job to step 6: it restores its orbax checkpoint on every process and each
    # process reads on from its own data position
    more = ['--config.training.n_iters=6', '--config.training.snapshot_freq=2']
    job = run_job([*args, f'--workdir={tmp_path / "job"}', *more], processes=2, devices=2)
    assert all(r.returncode == 0 for r in job), '\n'.join(r.explain() for r in job)
    assert 'training from step 4 to 6' in job[0].stderr, job[0].explain()
    for x, y in zip(_variables(tmp_path / 'job', 6), _variables(tmp_path / 'two', 6)):
        np.testing.assert_array_equal(x, y)
    resumed = [m['loss'] for m in _metrics(tmp_path / 'job') if 'loss' in m]
    assert resumed == losses[1] and len(resumed) == 3


@pytest.mark.parametrize('victim', [1, 0])
def test_a_killed_process_stops_the_job(tmp_path, victim):
    """SIGKILL one process mid-run (0 is also the coordinator): the survivor exits non-zero,
    naming the failure, within the heartbeat timeout (10 s) plus start-up slack."""
    args = [*SAMPLE, f'--workdir={tmp_path}', '--config.eval.num_samples=4000',
            '--config.sampling.steps=50']
    procs = start_job(args, processes=2, devices=2)
    first = tmp_path / 'samples' / f'samples_0_p{victim}of2.npz'
    deadline = time.monotonic() + 300
    while not first.exists():
        assert all(p.poll() is None for p in procs), 'a process ended before the kill'
        assert time.monotonic() < deadline, 'no round finished'
        time.sleep(0.1)
    os.killpg(procs[victim].pid, signal.SIGKILL)
    t0 = time.monotonic()
    survivor = wait_all([procs[1 - victim]], timeout=120)[0]
    elapsed = time.monotonic() - t0
    wait_all([procs[victim]], timeout=10)
    assert survivor.returncode != 0, survivor.explain()
    assert elapsed < 60, elapsed
    assert re.search(r'another process probably stopped|stopped sending heartbeats',
                     survivor.stderr), survivor.stderr[-3000:]
    assert not (tmp_path / 'metrics.json').exists()  # nothing that looks complete


def test_stats_2x2_processes_equals_1_process(tmp_path):
    from tests.helpers.inception_files import random_weights

    weights = tmp_path / 'inception.npz'
    random_weights(weights)
    args = [f'--config={ROOT}/configs/analytic/cifar10.py', '--mode=stats',
            '--config.data.image_size=8', '--config.sampling.pds.num_stat_images=7',
            '--config.eval.inception_batch_size=4', f'--config.eval.inception_weights={weights}']
    job = run_job([*args, f'--workdir={tmp_path / "job"}'], processes=2, devices=2)
    assert all(r.returncode == 0 for r in job), '\n'.join(r.explain() for r in job)
    single = run_single([*args, f'--workdir={tmp_path / "one"}'], devices=2)
    assert single.returncode == 0, single.explain()
    a, b = tmp_path / 'one' / 'stats', tmp_path / 'job' / 'stats'
    assert sorted(os.listdir(a)) == sorted(os.listdir(b))
    for name in ('freq_mask.npy', 'space_mask.npy'):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    fa, fb = np.load(a / 'fid_stats.npz'), np.load(b / 'fid_stats.npz')
    assert fa['features'].shape == fb['features'].shape == (7, 2048)  # 4 + 3 rows gathered
    np.testing.assert_allclose(fa['features'], fb['features'], rtol=1e-4, atol=1e-5)


def test_likelihood_2x2_processes_equals_1x4(tmp_path):
    """--mode=likelihood on the field (exact score, Hutchinson probes): each process writes its
    rows of every round, process 0 the report; the per-example results equal one process's."""
    args = [f'--config={ROOT}/configs/analytic/field_16.py', '--mode=likelihood',
            '--config.data.image_size=4', '--config.eval.batch_size=8',
            '--config.eval.num_samples=16', '--config.eval.bpd_rtol=1e-3',
            '--config.eval.bpd_atol=1e-3']
    one, two = tmp_path / 'one', tmp_path / 'two'
    single = run_single([*args, f'--workdir={one}'], devices=4)
    assert single.returncode == 0, single.explain()
    job = run_job([*args, f'--workdir={two}'], processes=2, devices=2)
    assert all(r.returncode == 0 for r in job), '\n'.join(r.explain() for r in job)
    names = sorted(os.listdir(two / 'likelihood' / 'exact'))
    assert names == sorted(f'round_{k}_p{i}of2.npz' for k in range(2) for i in range(2))
    a = np.load(one / 'likelihood' / 'examples_exact.npz')
    b = np.load(two / 'likelihood' / 'examples_exact.npz')
    assert sorted(a.files) == sorted(b.files) and len(a['bpd']) == 16
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    r1 = json.loads((one / 'likelihood' / 'report_exact.json').read_text())
    r2 = json.loads((two / 'likelihood' / 'report_exact.json').read_text())
    assert (r1['processes'], r2['processes']) == (1, 2) and r1['bpd'] == r2['bpd']


def test_one_process_tools_refuse_a_multi_process_job(tmp_path):
    job = run_job([f'--config={ROOT}/configs/analytic/cifar10.py', '--mode=fid',
                   f'--workdir={tmp_path}', f'--source={tmp_path}'], processes=2, devices=1,
                  timeout=300)
    for r in job:
        assert r.returncode == 2, r.explain()
        assert "invalid --mode='fid'" in r.stderr.strip().splitlines()[-1], r.explain()
