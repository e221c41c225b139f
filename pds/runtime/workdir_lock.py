"""One run per workdir: an advisory lock on ``<workdir>/.pds-lock`` held for the whole run.

Two runs writing one workdir would each pass the "earlier outputs" check and leave a mix of
both (one run's metrics beside the other's samples). ``main.py`` therefore takes this lock
after the configuration is checked and before a mode reads or writes the workdir:

- ``fcntl.flock(LOCK_EX | LOCK_NB)`` on the lock file: the kernel releases it when the
  process ends, however it ends (a ``kill -9`` never leaves a stale lock);
- the holder writes ``<pid> <host>`` into the file, and a second run that finds the lock
  taken refuses at once with a :class:`~pds.runtime.errors.ConfigError` naming them (exit 2,
  nothing read or written);
- on release the holder deletes the file (and the workdir, when this run created it and
  left it empty). A run that takes the lock checks that the file it locked is still the one
  at the path (same inode) and otherwise retries, so deleting the file never lets two runs
  hold "the" lock at once.

In a multi-process job process 0 holds the lock and the others learn the outcome from it
(:func:`hold_for_job`), so that every process stops alike when another run holds it.

The lock is advisory: it excludes runs of this program (on the same machine, and across
machines on file systems whose ``flock`` is cluster-wide, such as NFSv4 and Lustre), not
other programs writing the folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import time

from pds.runtime.errors import ConfigError

LOCK_NAME = '.pds-lock'
HOLDER_WAIT_S = 0.5  # how long to wait for a new holder to write its pid and host
_HELD: set[str] = set()  # real paths of the workdirs whose lock this process holds


def lock_path(workdir: str) -> str:
    return os.path.join(workdir, LOCK_NAME)


def _make_dirs(path: str) -> list[str]:
    """``os.makedirs(path)``; returns the folders it created, outermost first."""
    missing = []
    head = os.path.abspath(path)
    while not os.path.isdir(head):
        missing.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    os.makedirs(path, exist_ok=True)
    return missing[::-1]


def _holder(path: str) -> str:
    """'pid P on host H' from the lock file (waiting briefly for a holder that has just
    taken the lock to write it)."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        try:
            with open(path, encoding='utf-8', errors='replace') as f:
                words = f.read(256).split()
        except OSError:
            words = []
        if len(words) >= 2:
            return f'pid {words[0]} on host {words[1]}'
        if time.monotonic() > deadline:
            return 'a process that has not yet written its pid'
        time.sleep(0.02)


class WorkdirLock:
    """The lock of one workdir (module docstring). ``acquire`` then ``release``, or use it as
    a context manager."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.path = lock_path(workdir)
        self.fd: int | None = None
        self.created: list[str] = []

    def acquire(self) -> WorkdirLock:
        """Take the lock or raise ConfigError('--workdir', ...) naming the holder."""
        try:
            self.created = _make_dirs(self.workdir)
        except OSError as err:
            raise ConfigError('--workdir', self.workdir,
                              f'a writable directory ({err.strerror})') from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_CLOEXEC', 0),
                             0o666)
            except OSError as err:
                self._remove_created()
                raise ConfigError('--workdir', self.workdir, f'a writable directory (cannot '
                                  f'create its lock file {LOCK_NAME}: {err.strerror})') from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                    raise ConfigError('--workdir', self.workdir, 'a directory whose file '
                                      f'system supports file locks ({err.strerror})') from None
                raise ConfigError('--workdir', self.workdir, 'a workdir no other run is '
                                  f'using (another run holds {self.path}: '
                                  f'{_holder(self.path)}; wait for it to end, or choose '
                                  'another --workdir)') from None
            if self._still_at_path(fd):
                break
            os.close(fd)  # the holder before us deleted the file on release: take the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()} {socket.gethostname()}\n'.encode(), 0)
        self.fd = fd
        _HELD.add(os.path.realpath(self.workdir))
        return self

    def _still_at_path(self, fd: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self) -> None:
        """Delete the lock file, drop the lock, and remove the folders ``acquire`` created if
        they are empty. Safe to call twice."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            if self._still_at_path(self.fd):
                os.remove(self.path)
        os.close(self.fd)  # closing the last descriptor drops the flock
        self.fd = None
        _HELD.discard(os.path.realpath(self.workdir))
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in reversed(self.created):
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only when empty
        self.created = []

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holds(workdir: str) -> bool:
    """Whether this process holds ``workdir``'s lock."""
    return os.path.realpath(workdir) in _HELD


def workdir_from_argv(argv: list[str]) -> str | None:
    """``--workdir`` of a one-process command line, read before absl parses it (so that the
    lock comes before the config file loads, which may import jax: seconds); None when the
    command line leaves it unclear (a flag file, ``--distributed``, no or repeated
    ``--workdir``), and the lock is then taken after parsing."""
    found = []
    for i, arg in enumerate(argv[1:], 1):
        if arg == '--':  # the rest are positional arguments
            break
        if not arg.startswith('-'):
            continue
        name, eq, value = arg.lstrip('-').partition('=')
        if name in ('flagfile', 'distributed') or name.startswith('distributed'):
            return None
        if name == 'workdir':
            if eq:
                found.append(value)
            elif i + 1 < len(argv):
                found.append(argv[i + 1])
    return found[0] if len(found) == 1 and found[0] else None


def hold_for_job(workdir: str) -> WorkdirLock | None:
    """The workdir's lock for a (possibly multi-process) job, after ``jax.distributed``
    started: process 0 takes it and every process learns whether it could (a collective);
    the others raise ConfigError too when process 0 could not. Returns process 0's lock (the
    others: None)."""
    import numpy as np

    from pds.runtime import distributed

    lock, error = None, None
    if distributed.is_main():
        try:
            lock = WorkdirLock(workdir).acquire()
        except ConfigError as err:
            error = err
    ok = bool(distributed.gather(np.int32(error is None)).all())
    if error is not None:
        raise error
    if not ok:
        raise ConfigError('--workdir', workdir, 'a workdir no other run is using (process 0 '
                          'could not take its lock; see process 0\'s message)')
    return lock
