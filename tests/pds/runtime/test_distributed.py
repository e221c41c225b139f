"""pds.runtime.distributed on one process: launch resolution, row bookkeeping, file names."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from pds.runtime import distributed
from pds.runtime.distributed import Launch
from pds.runtime.errors import ConfigError
from pds.runtime.mesh import data_mesh
from tests.helpers.paths import ROOT, jax_env


def test_launch_reads_the_environment_after_the_flags(monkeypatch):
    monkeypatch.setenv('JAX_COORDINATOR_ADDRESS', 'h:1')
    monkeypatch.setenv('JAX_NUM_PROCESSES', '4')
    monkeypatch.setenv('JAX_PROCESS_ID', '3')
    got = distributed.resolve(Launch(True, process_id=2))
    assert (got.coordinator_address, got.num_processes, got.process_id) == ('h:1', 4, 2)


@pytest.mark.parametrize('launch,field', [
    (Launch(True, 'h:1', 2, 2), '--process_id'),
    (Launch(True, 'h:1', 0, 0), '--num_processes'),
    (Launch(heartbeat_timeout=0), '--heartbeat_timeout'),
    (Launch(cpu_devices=0), '--cpu_devices'),
])
def test_bad_launch_names_the_flag(launch, field):
    with pytest.raises(ConfigError, match=field):
        distributed.resolve(launch)


def test_bad_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv('JAX_PROCESS_ID', 'one')
    with pytest.raises(ConfigError, match="JAX_PROCESS_ID='one'"):
        distributed.resolve(Launch(True))


def test_local_rows_first_rows_and_gathers_on_one_process():
    mesh = data_mesh()
    x = np.arange(4 * len(mesh.devices.flat) * 3, dtype=np.float32).reshape(-1, 3)
    arr = jax.device_put(x, NamedSharding(mesh, P('data')))
    index, rows = distributed.local_rows(arr)
    np.testing.assert_array_equal(index, np.arange(len(x)))
    np.testing.assert_array_equal(rows, x)
    np.testing.assert_array_equal(distributed.first_rows(arr, 2), x[:2])
    assert distributed.gather({'a': np.ones(3)})['a'].shape == (1, 3)
    np.testing.assert_array_equal(distributed.gather_rows(x[:5]), x[:5])
    assert distributed.share(7) == slice(0, 7)
    assert distributed.process_file('samples', 3) == 'samples_3.npz'
    distributed.barrier('noop')  # one process: returns at once


def test_main_rejects_a_bad_process_id_in_one_line(tmp_path):
    res = subprocess.run([sys.executable, 'main.py', f'--config={ROOT}/configs/analytic/cifar10.py',
                          f'--workdir={tmp_path}', '--distributed', '--num_processes=2',
                          '--process_id=2', '--coordinator_address=localhost:1'],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines[-1] == ('error: invalid --process_id=2: an integer in [0, --num_processes=2)'), \
        res.stderr
    assert not os.listdir(tmp_path)


@pytest.mark.slow  # waits out --init_timeout=2
def test_a_peer_that_never_joins_ends_in_one_line(tmp_path):
    """Process 0 of 2 with no process 1: after --init_timeout seconds one 'error:' line naming
    the coordinator and the processes, exit code 1; not JAX's C++ abort (exit 134, stack)."""
    address = f'127.0.0.1:{distributed.free_port("127.0.0.1")}'
    res = subprocess.run([sys.executable, 'main.py',
                          f'--config={ROOT}/configs/analytic/field_16.py', '--mode=sample',
                          f'--workdir={tmp_path}', '--distributed', '--num_processes=2',
                          '--process_id=0', f'--coordinator_address={address}',
                          '--init_timeout=2'],
                         cwd=ROOT, env=jax_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and res.stderr.strip().splitlines()[-1] == errors[0], res.stderr
    assert address in errors[0] and 'process 0 of 2' in errors[0], errors[0]
    assert 'did not join within --init_timeout=2 seconds' in errors[0], errors[0]
    for trace in ('Traceback', 'Check failure', 'stack trace', 'Fatal Python error'):
        assert trace not in res.stderr, res.stderr[-3000:]
