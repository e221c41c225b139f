"""Launch ``main.py`` as one process or as a multi-process job on localhost (tests only).

A job is ``processes`` copies of the same command with ``--distributed`` and a free
coordinator port, each with ``devices`` simulated CPU devices; every wait is bounded and a job
that overruns is killed whole.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

from pds.runtime.distributed import free_port
from tests.helpers.paths import ROOT, jax_env


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def explain(self) -> str:
        return f'rc={self.returncode}\n{self.stdout[-2000:]}\n{self.stderr[-4000:]}'


def environment() -> dict[str, str]:
    return jax_env(PYTHONUNBUFFERED='1')  # devices come from --cpu_devices


def command(args: list[str], devices: int) -> list[str]:
    return [sys.executable, os.path.join(ROOT, 'main.py'), *args, f'--cpu_devices={devices}']


def start_job(args: list[str], processes: int, devices: int, heartbeat: int = 10
              ) -> list[subprocess.Popen]:
    """Start the job's processes (process i gets ``--process_id=i``)."""
    port = free_port()
    dist = ['--distributed', f'--coordinator_address=localhost:{port}',
            f'--num_processes={processes}', f'--heartbeat_timeout={heartbeat}',
            '--init_timeout=60']
    return [subprocess.Popen(command([*args, *dist, f'--process_id={i}'], devices),
                             env=environment(), cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
            for i in range(processes)]


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[Result]:
    """Wait for every process, at most ``timeout`` seconds in all; on overrun kill them all
    and fail with their output."""
    deadline = time.monotonic() + timeout
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append(Result(p.returncode, out, err))
    except subprocess.TimeoutExpired:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        outs = [p.communicate() for p in procs]
        tails = '\n'.join(f'--- process {i}\n{o[0][-1500:]}\n{o[1][-3000:]}'
                          for i, o in enumerate(outs))
        raise AssertionError(f'job still running after {timeout:g} s:\n{tails}') from None
    return results


def run_job(args: list[str], processes: int, devices: int, timeout: float = 600
            ) -> list[Result]:
    return wait_all(start_job(args, processes, devices), timeout)


def run_single(args: list[str], devices: int, timeout: float = 600) -> Result:
    p = subprocess.Popen(command(args, devices), env=environment(), cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    return wait_all([p], timeout)[0]
