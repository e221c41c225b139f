"""``--overwrite`` without loss: an earlier run's outputs are moved aside, not deleted, until
the new run has something to put in their place.

    with replacing(workdir, [metrics.json, samples/], overwrite) as rep:
        ...                      # the new run writes its outputs
        rep.commit()             # optional, early: the new outputs now stand on their own

On entry, process 0 moves every existing output into ``<workdir>/.replaced-<pid>/`` (a rename:
the bytes are untouched). If the body raises (any exception, Ctrl-C included), the new run's
files at those paths are removed and the old ones are renamed back, byte-identical. When the
body returns (or calls ``commit``), the set-aside copy is deleted. A process killed in between
leaves the folder behind; the next run in that workdir refuses to start and names it, so the
user decides (move the files back, or delete the folder).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
from collections.abc import Iterator, Sequence

from pds.runtime import distributed
from pds.runtime.errors import ConfigError

ASIDE_PREFIX = '.replaced-'


def has_output(path: str) -> bool:
    """A file, or a folder holding anything but dot-named temporaries."""
    if os.path.isdir(path):
        return any(not name.startswith('.') for name in os.listdir(path))
    return os.path.exists(path)


def check_not_interrupted(workdir: str) -> None:
    """ConfigError when an earlier ``--overwrite`` run died with the old outputs set aside."""
    left = sorted(glob.glob(os.path.join(workdir, ASIDE_PREFIX + '*')))
    if left:
        raise ConfigError('--workdir', workdir, 'a directory without an interrupted '
                          f'--overwrite run (the outputs it replaced are in {left[0]}: move '
                          'them back into the workdir, or delete that folder, then rerun)')


def claim(paths: Sequence[str], overwrite: bool) -> list[str]:
    """The paths that hold outputs; ConfigError when there are any and not ``overwrite``."""
    existing = [p for p in paths if has_output(p)]
    if existing and not overwrite:
        raise ConfigError('--workdir', os.path.dirname(existing[0]) or '.',
                          f'a directory without earlier outputs ({existing[0]} exists; pass '
                          '--overwrite to replace them)')
    return existing


class Replacement:
    """The set-aside outputs of one ``replacing`` block (process 0 holds them)."""

    def __init__(self, workdir: str, paths: Sequence[str]):
        self.workdir = workdir
        self.paths = list(paths)
        self.aside = os.path.join(workdir, f'{ASIDE_PREFIX}{os.getpid()}')
        self.moved: list[tuple[str, str]] = []  # (original path, set-aside path)
        self.done = False

    def move_aside(self, existing: Sequence[str]) -> None:
        for path in existing:
            rel = os.path.relpath(path, self.workdir)
            if rel.startswith('..'):
                raise ValueError(f'{path} is outside the workdir {self.workdir}')
            target = os.path.join(self.aside, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(path, target)
            self.moved.append((path, target))

    def commit(self) -> None:
        """The new run's outputs replace the old ones for good: delete the set-aside copy."""
        if self.done:
            return
        self.done = True
        if os.path.isdir(self.aside):
            shutil.rmtree(self.aside, ignore_errors=True)

    def restore(self) -> None:
        """Remove what the new run wrote at the claimed paths; put the old outputs back."""
        if self.done:
            return
        self.done = True
        for path in self.paths:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.remove(path)
        for path, target in self.moved:
            os.rename(target, path)
        if os.path.isdir(self.aside):
            shutil.rmtree(self.aside, ignore_errors=True)


@contextlib.contextmanager
def replacing(workdir: str, paths: Sequence[str], overwrite: bool,
              tag: str | None = 'outputs') -> Iterator[Replacement]:
    """Claim ``paths`` (files or folders under ``workdir``) for a new run; see the module doc.

    Every process checks; process 0 moves the old outputs aside, and the others wait for it
    (barrier ``<tag>:claimed``; ``tag=None``: no barrier, for a block only process 0 runs).
    """
    check_not_interrupted(workdir)
    existing = claim(paths, overwrite)
    rep = Replacement(workdir, paths)
    main = distributed.is_main()
    if main:
        rep.move_aside(existing)
    if tag is not None:
        distributed.barrier(f'{tag}:claimed')
    try:
        yield rep
    except BaseException:
        if main:
            rep.restore()
        raise
    if main:
        rep.commit()
