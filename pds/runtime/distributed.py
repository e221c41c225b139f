"""Multi-process runs: ``jax.distributed`` start-up and the host-side helpers of every mode.

A multi-host job is the same command on every process (every host of a TPU pod slice, every
node of a GPU cluster, or several processes on one machine). ``main.py --distributed`` calls
:func:`initialize` before any JAX computation; the device mesh then spans every process's
devices (:func:`pds.runtime.mesh.data_mesh`) and each process holds only its addressable shards.

Where the process layout comes from, first match wins:

- flags ``--coordinator_address``, ``--num_processes``, ``--process_id``;
- environment ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``;
- JAX's cluster auto-detection (Cloud TPU, SLURM, Open MPI) for whatever is still unset.

On CPU the collectives run over gloo (TCP), so several processes on one machine form one job
(the tests' 2 processes x 2 devices). Failure handling: the coordination service declares a
process dead after ``--heartbeat_timeout`` seconds without heartbeats and terminates the others
with a message naming it; a process that stops on a Python error leaves at once
(:func:`abort`; after an input error it first gives the others a few seconds to shut down
alike) instead of waiting at JAX's shutdown barrier, so the others stop within the heartbeat
timeout rather than hang; :func:`barrier` waits at most ``timeout`` seconds. A job whose
processes do not all join within ``--init_timeout`` seconds ends with one line on stderr and
exit code 1 (:func:`initialize`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import sys
import threading
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from pds.runtime.errors import ConfigError

ENV = {'coordinator_address': 'JAX_COORDINATOR_ADDRESS', 'num_processes': 'JAX_NUM_PROCESSES',
       'process_id': 'JAX_PROCESS_ID'}


@dataclasses.dataclass(frozen=True)
class Launch:
    """How this process joins the job (``main.py`` flags)."""

    distributed: bool = False
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    cpu_devices: int | None = None  # simulated CPU devices per process (tests, laptops)
    heartbeat_timeout: int = 100  # seconds without heartbeats before a process counts as dead
    init_timeout: int = 300  # seconds to wait for every process to join


def _from_env(name: str, value: Any) -> Any:
    if value is not None:
        return value
    raw = os.environ.get(ENV[name])
    if raw is None or name == 'coordinator_address':
        return raw
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(ENV[name], raw, 'an integer') from None


def resolve(launch: Launch) -> Launch:
    """Fill unset fields from the environment and check them (ConfigError names the flag)."""
    out = dataclasses.replace(launch, **{k: _from_env(k, getattr(launch, k)) for k in ENV})
    if out.num_processes is not None and out.num_processes < 1:
        raise ConfigError('--num_processes', out.num_processes, 'an integer >= 1')
    if out.process_id is not None and not (
            0 <= out.process_id < (out.num_processes or out.process_id + 1)):
        raise ConfigError('--process_id', out.process_id,
                          f'an integer in [0, --num_processes={out.num_processes})')
    for name in ('heartbeat_timeout', 'init_timeout'):
        if getattr(out, name) < 1:
            raise ConfigError(f'--{name}', getattr(out, name), 'seconds >= 1')
    if out.cpu_devices is not None and out.cpu_devices < 1:
        raise ConfigError('--cpu_devices', out.cpu_devices, 'an integer >= 1')
    return out


def free_port(host: str = 'localhost') -> int:
    """A TCP port free on ``host`` now, for the coordinator of a job started on this machine
    (another program may still take it before the coordinator binds it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def initialize(launch: Launch) -> Launch:
    """Configure JAX for ``launch`` (before any computation); returns the resolved launch.

    With ``launch.distributed``, joins the job; if the other processes have not joined within
    ``launch.init_timeout`` seconds, prints one ``error: ...`` line naming the coordinator
    address, this process and the process count, and ends the process with exit code 1.
    """
    launch = resolve(launch)
    if launch.cpu_devices is not None:
        jax.config.update('jax_num_cpu_devices', launch.cpu_devices)
    if not launch.distributed:
        return launch
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    _join(launch)
    return launch


JOIN_MARGIN = 10  # seconds JAX's own join deadline lies beyond the watchdog's


def join_timeout_message(launch: Launch) -> str:
    """The one line printed when the peers of ``launch`` did not join in time."""
    address = launch.coordinator_address or 'the auto-detected coordinator'
    pid = '?' if launch.process_id is None else launch.process_id
    count = '?' if launch.num_processes is None else launch.num_processes
    return (f'error: process {pid} of {count} could not form the job at coordinator {address}: '
            f'the peers did not join within --init_timeout={launch.init_timeout} seconds '
            '(start every process with the same --coordinator_address and --num_processes, '
            'or raise --init_timeout)')


def _join(launch: Launch) -> None:
    """``jax.distributed.initialize`` under a watchdog.

    When the job does not form in time, JAX's C++ client aborts the process (exit 134 and a
    C++ stack trace), which Python cannot catch. So JAX gets ``init_timeout + JOIN_MARGIN``
    seconds and a watchdog thread, after ``init_timeout`` seconds, prints
    :func:`join_timeout_message` (one line on stderr) and ends the process with code 1.
    """
    done = threading.Event()

    def expire() -> None:
        if not done.is_set():
            print(join_timeout_message(launch), file=sys.stderr, flush=True)
            os._exit(1)

    watchdog = threading.Timer(launch.init_timeout, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(
            coordinator_address=launch.coordinator_address, num_processes=launch.num_processes,
            process_id=launch.process_id, initialization_timeout=launch.init_timeout + JOIN_MARGIN,
            heartbeat_timeout_seconds=launch.heartbeat_timeout)
    except ValueError as err:  # JAX found no coordinator, process count or id to use
        raise ConfigError('--coordinator_address', launch.coordinator_address,
                          'host:port of process 0 with --num_processes and --process_id (or '
                          '$JAX_COORDINATOR_ADDRESS, ..., or a cluster JAX detects, such as '
                          f'SLURM or a TPU pod) for --distributed; JAX: {err}') from None
    finally:
        done.set()
        watchdog.cancel()


def is_main() -> bool:
    """Process 0: writes reports, logs and shows progress bars."""
    return jax.process_index() == 0


def abort(message: str, code: int, grace: float = 0.0) -> None:
    """Print ``message`` and leave with ``code``.

    In a multi-process job, never wait unboundedly at JAX's shutdown barrier (the other
    processes may be blocked in a collective with this one): with ``grace`` > 0 (input errors,
    which every process usually meets alike) wait at most ``grace`` seconds for the others to
    shut down too, so that each prints its own message; then leave at once. The coordination
    service stops any process still running within the heartbeat timeout.
    """
    prefix = f'[process {jax.process_index()}] ' if _multi() else ''
    print(f'{prefix}{message}', file=sys.stderr, flush=True)
    if not _multi():
        sys.exit(code)
    if grace > 0:
        watchdog = threading.Timer(grace, os._exit, (code,))
        watchdog.daemon = True
        watchdog.start()
        with contextlib.suppress(Exception):
            jax.distributed.shutdown()
    os._exit(code)


def _multi() -> bool:
    from jax._src import distributed

    return distributed.global_state.client is not None


def barrier(name: str, timeout: float = 600.0) -> None:
    """Wait until every process reaches barrier ``name`` (unique per use), at most ``timeout``
    seconds; a RuntimeError naming the barrier otherwise."""
    if jax.process_count() == 1:
        return
    from jax._src import distributed

    try:
        distributed.global_state.client.wait_at_barrier(name, int(timeout * 1000))
    except Exception as err:
        raise RuntimeError(f'barrier {name!r}: not every process arrived within {timeout:g} s '
                           f'({type(err).__name__}: {str(err).splitlines()[0][:300]})') from None


def local_rows(x: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """(global row indices, rows) of this process's shards of an array sharded on axis 0,
    in global order; replicas of the same rows are taken once."""
    blocks: dict[int, Any] = {}
    for shard in x.addressable_shards:
        start = shard.index[0].start or 0 if shard.index else 0
        if start not in blocks:
            blocks[start] = shard.data
    starts = sorted(blocks)
    rows = np.concatenate([np.asarray(blocks[s]) for s in starts])
    index = np.concatenate([np.arange(s, s + blocks[s].shape[0]) for s in starts])
    return index, rows


def first_rows(x: jax.Array, n: int) -> np.ndarray:
    """Rows [0, n) of a sharded array, on every process."""
    if x.is_fully_addressable:
        return np.asarray(x[:n])
    take = jax.jit(lambda a: a[:n], out_shardings=NamedSharding(x.sharding.mesh, P()))
    return np.asarray(take(x))


def gather(tree: Any) -> Any:
    """Every process's host pytree (numpy leaves of equal shapes on all processes), stacked
    on a new leading axis in process order: (num_processes, ...) per leaf."""
    if jax.process_count() == 1:
        return jax.tree_util.tree_map(lambda a: np.asarray(a)[None], tree)
    from jax.experimental import multihost_utils

    return jax.tree_util.tree_map(np.asarray, multihost_utils.process_allgather(tree))


def gather_rows(x: np.ndarray) -> np.ndarray:
    """Every process's rows (lengths may differ) concatenated in process order."""
    if jax.process_count() == 1:
        return np.asarray(x)
    counts = gather(np.int64(len(x)))
    pad = np.zeros((int(counts.max()) - len(x), *x.shape[1:]), x.dtype)
    parts = gather(np.concatenate([x, pad]))
    return np.concatenate([p[:c] for p, c in zip(parts, counts)])


def share(n: int) -> slice:
    """This process's contiguous share of n items (sizes differ by at most one)."""
    bounds = np.linspace(0, n, jax.process_count() + 1).round().astype(int)
    i = jax.process_index()
    return slice(int(bounds[i]), int(bounds[i + 1]))


def process_file(stem: str, k: int) -> str:
    """File name of round ``k``'s rows held by this process: ``<stem>_<k>.npz`` in a
    one-process job, ``<stem>_<k>_p<i>of<n>.npz`` otherwise (names never collide)."""
    if jax.process_count() == 1:
        return f'{stem}_{k}.npz'
    return f'{stem}_{k}_p{jax.process_index()}of{jax.process_count()}.npz'


def process_files(stem: str, k: int) -> list[str]:
    """The file names of round ``k`` of every process (:func:`process_file`), in process
    order."""
    n = jax.process_count()
    if n == 1:
        return [f'{stem}_{k}.npz']
    return [f'{stem}_{k}_p{i}of{n}.npz' for i in range(n)]
