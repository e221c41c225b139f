"""A main.py run killed (SIGKILL) right after it wrote its first round file, for the resume
tests of the round-based modes (eval, likelihood)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# Runs main.py, but blocks for good right after round_0.npz is written: the caller kills it.
_CHILD = """
import os, sys, time
from pds.storage import outputs
_write = outputs.write_npz
def write_npz(path, **arrays):
    _write(path, **arrays)
    if os.path.basename(path) == 'round_0.npz':
        time.sleep(600)
outputs.write_npz = write_npz
import main
from absl import app
sys.argv = ['main.py'] + sys.argv[1:]
app.run(main.main)
"""


def run_killed_after_first_round(args: list[str], env: dict[str, str], round_dir: Path,
                                 timeout: float = 300.0) -> None:
    """Start ``main.py args`` and SIGKILL it once ``round_dir/round_0.npz`` exists; fails the
    test if the child exits first or the round never appears within ``timeout`` seconds."""
    child = subprocess.Popen([sys.executable, '-c', _CHILD, *args], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not (round_dir / 'round_0.npz').exists():
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, 'round_0.npz never appeared'
            time.sleep(0.2)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
