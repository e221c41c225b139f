"""Temporary files a killed run left in its workdir, removed by the next run.

:func:`pds.storage.outputs.write_bytes` writes every output to ``.tmp-<random>`` beside its
final name and renames it when whole; a run killed in between (``kill -9`` while bench writes
its report, or stats its statistics) leaves the ``.tmp-*`` file behind. Nothing else creates
such names, and ``main.py`` calls :func:`remove_temporaries` while it holds the workdir's lock
(:mod:`pds.runtime.workdir_lock`), so no live run of this program is writing one.
Folders an ``--overwrite`` run set aside (``.replaced-*``) are left alone: the run that finds
them refuses to start and names them.
"""

from __future__ import annotations

import contextlib
import os

from absl import logging

from pds.storage.replace import ASIDE_PREFIX

TMP_PREFIX = '.tmp-'  # outputs.write_bytes' temporary names


def remove_temporaries(workdir: str) -> list[str]:
    """Delete every ``.tmp-*`` file under ``workdir`` (outside ``.replaced-*`` folders);
    returns their paths relative to ``workdir``."""
    removed = []
    for d, dirs, files in os.walk(workdir):
        dirs[:] = [x for x in dirs if not x.startswith(ASIDE_PREFIX)]
        for name in files:
            if name.startswith(TMP_PREFIX):
                path = os.path.join(d, name)
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                    removed.append(os.path.relpath(path, workdir))
    if removed:
        logging.warning('removed temporary files of an earlier run that was killed while '
                        'writing: %s', sorted(removed))
    return sorted(removed)
