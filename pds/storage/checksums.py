"""sha256 checksums of checkpoint arrays and files.

- :func:`leaf_checksum`: sha256 (hex) of one array's dtype name, shape and bytes in C order,
  so that equal digests mean equal arrays (value, dtype and shape), whatever file holds them.
- :func:`tree_checksums`: that digest per leaf of a nested mapping of arrays, keyed by the
  leaf's '/'-joined path ('params/Conv_0/kernel').
- :func:`file_checksums`: sha256 of every file under a folder, keyed by its '/'-joined path
  relative to the folder, for a manifest that covers files no array digest reaches (orbax's
  index and metadata files, JSON metadata).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

CHUNK = 1 << 20  # bytes read at a time when hashing a file


def leaf_checksum(value: Any) -> str:
    """sha256 (hex) of a host array's dtype name, shape and bytes in C order."""
    a = np.ascontiguousarray(np.asarray(value))
    h = hashlib.sha256(f'{a.dtype.name}{tuple(int(d) for d in a.shape)}'.encode())
    h.update(a.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


def tree_checksums(tree: Any, prefix: str = '') -> dict[str, str]:
    """{'a/b/c': leaf_checksum(leaf)} over every leaf of nested mappings of arrays."""
    if not isinstance(tree, Mapping):
        return {prefix: leaf_checksum(tree)}
    out: dict[str, str] = {}
    for key, value in tree.items():
        out.update(tree_checksums(value, f'{prefix}/{key}' if prefix else str(key)))
    return out


def file_checksum(path: str) -> str:
    """sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_checksums(folder: str, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """{relative path: sha256} of every regular file under ``folder`` (sorted walk), except
    the relative paths in ``skip``."""
    out: dict[str, str] = {}
    for d, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(d, name)
            rel = os.path.relpath(path, folder).replace(os.sep, '/')
            if rel not in skip and os.path.isfile(path):
                out[rel] = file_checksum(path)
    return out


def first_difference(found: Mapping[str, str], recorded: Mapping[str, str]
                     ) -> tuple[str, str] | None:
    """(key, reason) of the first key (sorted) whose digest differs, is missing from ``found``
    or was not recorded; None when the two agree."""
    for key in sorted(set(found) | set(recorded)):
        if key not in recorded:
            return key, 'not in the recorded checksums'
        if key not in found:
            return key, 'missing'
        if found[key] != recorded[key]:
            return key, 'its sha256 differs from the recorded one'
    return None


MANIFEST = 'sha256sums.json'  # a checkpoint step's file manifest, beside its items
REPAIR = ('re-export or re-convert it: a training export comes back when the step folder is '
          'deleted and --mode=train is rerun in its workdir (the newest snapshot is exported '
          'again), a converted checkpoint with --mode=convert --overwrite')


def write_manifest(folder: str) -> str:
    """Write ``<folder>/sha256sums.json``: {'files': {relative path: sha256}} of every other
    file under ``folder``; returns its path."""
    from pds.storage import outputs

    path = os.path.join(folder, MANIFEST)
    outputs.write_json(path, {'files': file_checksums(folder, skip=(MANIFEST,))})
    return path


def read_manifest(folder: str, field: str = 'checkpoint') -> dict[str, str] | None:
    """The recorded {relative path: sha256} of ``folder``, or None when it has no manifest;
    ConfigError(field, ...) when the manifest itself is unreadable."""
    import json

    from pds.runtime.errors import ConfigError

    path = os.path.join(folder, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            files = json.load(f)['files']
        if not isinstance(files, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise TypeError('files is not a mapping of paths to digests')
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(field, path, f'a readable checksum manifest ({type(err).__name__}: '
                          f'{err}); the checkpoint is damaged: {REPAIR}') from None
    return files


def verify_manifest(folder: str, field: str = 'checkpoint') -> bool:
    """Check every file under ``folder`` against its manifest: ConfigError(field, <file>, ...)
    naming the first file that differs, is missing or was not recorded. Returns False (nothing
    checked) when the folder has no manifest."""
    from pds.runtime.errors import ConfigError

    recorded = read_manifest(folder, field)
    if recorded is None:
        return False
    diff = first_difference(file_checksums(folder, skip=(MANIFEST,)), recorded)
    if diff is not None:
        name, reason = diff
        raise ConfigError(field, os.path.join(folder, name), f'a file matching {MANIFEST} '
                          f'({reason}): the checkpoint is damaged; {REPAIR}')
    return True
