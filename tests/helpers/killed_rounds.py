"""A main.py run killed (SIGKILL) right after it wrote a given file (its first round file, by
default), for the resume tests of the round-based modes (eval, likelihood) and of the data
bench's cells."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# Runs main.py, but blocks for good right after the file named by argv[1] is written: the
# caller kills it.
_CHILD = """
import os, sys, time
from pds.storage import outputs
_write, _name = outputs.write_npz, sys.argv.pop(1)
def write_npz(path, **arrays):
    _write(path, **arrays)
    if os.path.basename(path) == _name:
        time.sleep(600)
outputs.write_npz = write_npz
import main
from absl import app
sys.argv = ['main.py'] + sys.argv[1:]
app.run(main.main)
"""


def run_killed_after_first_round(args: list[str], env: dict[str, str], round_dir: Path,
                                 timeout: float = 300.0, name: str = 'round_0.npz') -> None:
    """Start ``main.py args`` and SIGKILL it once ``round_dir/name`` exists; fails the test if
    the child exits first or the file never appears within ``timeout`` seconds."""
    child = subprocess.Popen([sys.executable, '-c', _CHILD, name, *args], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not (round_dir / name).exists():
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, f'{name} never appeared'
            time.sleep(0.2)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
