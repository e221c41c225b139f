"""Training checkpoints under ``<workdir>/train_checkpoints`` (orbax), preemption-safe.

Layout::

    train_checkpoints/snapshots/<step>/    every ``training.snapshot_freq`` steps (all kept)
    train_checkpoints/preemption/<step>/   every ``training.snapshot_freq_for_preemption``
                                           steps (only the newest kept)
    <kind>/<step>/state/                   orbax PyTree: the leaves of the TrainState
                                           (step, params, optimizer state, EMA, model state)
                                           under keys '00000', '00001', ... in flatten order
    <kind>/<step>/meta/                    JSON: step, seed, data position, leaf paths,
                                           and 'checksums': {'00000': sha256 hex, ...}

Atomicity: orbax writes a step under ``<step>.orbax-checkpoint-tmp-<n>`` and renames it to
``<step>`` only when every file is written; the managers list only finalized steps, so a run
killed during a save leaves either the previous checkpoints or the new complete one. The older
preemption checkpoint is deleted only after the new one is final. A restart restores the newest
step of either kind; if that step cannot be read (a damaged disk, not an interrupted save) it
falls back to the next older one, with a warning.

Checksums: orbax's index files are checksummed but the array data files are not, so bytes
flipped inside a data file (a bad disk, a bad copy) would restore as a silently corrupted leaf.
``save`` therefore records, per leaf, the sha256 of its dtype name, shape and bytes in C order
(:func:`leaf_checksum`, computed on the host arrays it writes), and a restore verifies every
leaf it reads; a mismatch makes the checkpoint count as damaged like an unreadable one.
Checkpoints written before checksums existed (meta without 'checksums') restore unverified.
When checkpoints exist but none is good, :meth:`TrainCheckpoints.restore_latest` raises a
ConfigError rather than reporting an empty workdir.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import jax
import numpy as np
from absl import logging as absl_logging

from pds.runtime import distributed
from pds.runtime.errors import ConfigError
from pds.storage.checksums import leaf_checksum
from pds.storage.sampling_checkpoints import orbax_manager

KINDS = ('snapshots', 'preemption')
TMP_MARK = '.orbax-checkpoint-tmp'  # orbax's suffix of a step folder still being written


def _ocp():
    import orbax.checkpoint as ocp

    return ocp


def _leaf_key(i: int) -> str:
    return f'{i:05d}'


def flatten_state(state: Any) -> tuple[dict[str, Any], list[str]]:
    """The state's leaves as {'00000': leaf, ...} and their pytree paths (for messages)."""
    with_path, _ = jax.tree_util.tree_flatten_with_path(state)
    leaves = {_leaf_key(i): leaf for i, (_, leaf) in enumerate(with_path)}
    return leaves, [jax.tree_util.keystr(p) for p, _ in with_path]


class ChecksumMismatchError(RuntimeError):
    """A restored leaf differs from what was saved: the checkpoint is damaged."""


def _host_value(x: Any) -> np.ndarray | None:
    """The whole value of a restored leaf on this host, or None when this process holds only
    part of it (a leaf sharded across processes is not verified)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        shard = x.addressable_shards[0].data
        return np.asarray(shard) if shard.shape == x.shape else None
    return np.asarray(x)


def verify_leaves(leaves: dict[str, Any], meta: dict[str, Any]) -> int:
    """Compare restored ``leaves`` ({'00000': array, ...}) with ``meta['checksums']``;
    ChecksumMismatchError naming the first differing leaf's path. Returns the number of leaves
    verified (0 for a checkpoint saved without checksums)."""
    sums = meta.get('checksums')
    if not sums:
        return 0
    paths = meta.get('leaf_paths') or []
    checked = 0
    for key in sorted(leaves):
        value = _host_value(leaves[key])
        if value is None:
            continue
        i = int(key)
        name = paths[i] if i < len(paths) else key
        if key not in sums:
            raise ChecksumMismatchError(f'leaf {name} has no recorded checksum')
        if leaf_checksum(value) != sums[key]:
            raise ChecksumMismatchError(f'leaf {name} does not match its checksum')
        checked += 1
    return checked


def unflatten_state(template: Any, leaves: dict[str, Any]) -> Any:
    treedef = jax.tree_util.tree_structure(template)
    return jax.tree_util.tree_unflatten(treedef, [leaves[_leaf_key(i)]
                                                  for i in range(treedef.num_leaves)])


def _manager(directory: str, max_to_keep: int | None, create: bool):
    """A training-checkpoint manager (item 'state')."""
    return orbax_manager(directory, 'state', create, max_to_keep)


class TrainCheckpoints:
    """Save and restore :class:`pds.training.train.TrainState` under
    ``<workdir>/train_checkpoints``."""

    def __init__(self, workdir: str):
        self.root = os.path.join(os.path.abspath(workdir), 'train_checkpoints')
        self.remove_unfinished()
        distributed.barrier('train:unfinished-removed')  # before any process lists steps

    def remove_unfinished(self) -> list[str]:
        """Delete the folders of saves that never finalized (a run killed while saving).

        Done here once, synchronously: orbax's own clean-up runs in the background each time
        a manager opens, and two of them race on the same folder.
        """
        removed = []
        if jax.process_index() != 0:
            return removed
        for kind in KINDS:
            d = self.directory(kind)
            for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
                if TMP_MARK in name:
                    shutil.rmtree(os.path.join(d, name), ignore_errors=True)
                    removed.append(name)
        if removed:
            absl_logging.warning('removed unfinished checkpoint saves: %s', removed)
        return removed

    def directory(self, kind: str) -> str:
        return os.path.join(self.root, kind)

    @staticmethod
    def _keep(kind: str) -> int | None:
        return None if kind == 'snapshots' else 1

    def steps(self, kind: str) -> list[int]:
        """Complete steps of ``kind``, ascending."""
        d = self.directory(kind)
        if not os.path.isdir(d):
            return []
        with _manager(d, self._keep(kind), create=False) as manager:
            return sorted(int(s) for s in manager.all_steps())

    def candidates(self) -> list[tuple[int, str]]:
        """(step, kind) of every complete checkpoint, newest first."""
        found = [(s, kind) for kind in KINDS for s in self.steps(kind)]
        return sorted(found, reverse=True)

    def save(self, state: Any, kind: str, meta: dict[str, Any]) -> int:
        """Write ``state`` as a ``kind`` checkpoint at its step, with a checksum per leaf in
        its meta (module docstring); returns the step."""
        ocp = _ocp()
        leaves, paths = flatten_state(jax.device_get(state))
        arrays = {k: np.asarray(v) for k, v in leaves.items()}
        step = int(np.asarray(state.step))
        sums = {k: leaf_checksum(v) for k, v in arrays.items()}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(arrays),
            meta=ocp.args.JsonSave({**meta, 'step': step, 'kind': kind, 'leaf_paths': paths,
                                    'checksums': sums}))
        with _manager(self.directory(kind), self._keep(kind), create=True) as manager:
            if step in manager.all_steps():
                return step  # already saved (a resumed run at a saved step)
            if not manager.save(step, args=args, force=True):
                raise RuntimeError(f'orbax declined to save step {step} in {self.root}')
            manager.wait_until_finished()
        return step

    def read_meta(self, step: int, kind: str) -> dict[str, Any]:
        ocp = _ocp()
        with _manager(self.directory(kind), self._keep(kind), create=False) as manager:
            out = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out['meta'])

    def _check_shapes(self, manager: Any, step: int, template: Any, where: str) -> None:
        stored = manager.item_metadata(step)['state']
        stored = getattr(stored, 'tree', stored)
        expected, paths = flatten_state(template)
        for key, leaf in expected.items():
            if key not in stored:
                raise ConfigError('--workdir', where, 'a training checkpoint of this config '
                                  f'(it lacks {paths[int(key)]}); pass --overwrite to start over')
            shape = tuple(getattr(stored[key], 'shape', ()))
            if shape != tuple(leaf.shape):
                raise ConfigError('--workdir', where, 'a training checkpoint of this config '
                                  f'({paths[int(key)]} has shape {shape} there but '
                                  f'{tuple(leaf.shape)} here); pass --overwrite to start over')
        if len(stored) != len(expected):
            raise ConfigError('--workdir', where, 'a training checkpoint of this config (it '
                              f'holds {len(stored)} arrays, this config {len(expected)}); '
                              'pass --overwrite to start over')

    def _restore(self, step: int, kind: str, template: Any, sharding: Any
                 ) -> tuple[Any, dict[str, Any]]:
        """(state, meta) of (step, kind), every leaf verified against the meta's checksums."""
        ocp = _ocp()
        where = os.path.join(self.directory(kind), str(step))
        abstract = {k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype, sharding=sharding)
                    for k, v in flatten_state(template)[0].items()}
        with _manager(self.directory(kind), self._keep(kind), create=False) as manager:
            self._check_shapes(manager, step, template, where)
            out = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        leaves, meta = dict(out['state']), dict(out['meta'])
        verify_leaves(leaves, meta)
        return unflatten_state(template, leaves), meta

    def restore_step(self, step: int, kind: str, template: Any, sharding: Any) -> Any:
        """The state of (step, kind), laid out like ``template`` with ``sharding``.

        Every leaf is checked against the checksum saved with it (ChecksumMismatchError naming
        the leaf when it differs); checkpoints saved without checksums are not verified. A
        stored tree that does not fit ``template`` is a ConfigError.
        """
        return self._restore(step, kind, template, sharding)[0]

    def restore_latest(self, template: Any, sharding: Any) -> tuple[Any, dict] | None:
        """(state, meta) of the newest good checkpoint; None when there is none at all.

        A checkpoint that cannot be read or whose leaves do not match their checksums is
        damaged: a warning names its kind, step and the reason (the leaf, for a checksum),
        and the next older one is tried. When checkpoints exist but every one is damaged,
        a ConfigError (field '--workdir') lists the steps tried and the first reason.
        """
        damaged: list[tuple[str, str]] = []
        for step, kind in self.candidates():
            try:
                state, meta = self._restore(step, kind, template, sharding)
            except ConfigError:
                raise
            except ChecksumMismatchError as err:
                reason = str(err)
            except Exception as err:  # a damaged step: say so, try the next older one
                first = str(err).splitlines()[0][:200] if str(err) else ''
                reason = f'unreadable: {type(err).__name__}: {first}'
            else:
                absl_logging.info('resuming from training checkpoint %s/%d', kind, step)
                return state, meta
            absl_logging.warning('training checkpoint %s/%d is damaged (%s); trying an '
                                 'older one', kind, step, reason)
            damaged.append((f'{kind}/{step}', reason))
        if damaged:
            tried = ', '.join(name for name, _ in damaged)
            raise ConfigError('--workdir', os.path.dirname(self.root),
                              f'a workdir with a good training checkpoint; every training '
                              f'checkpoint in {self.root} is damaged (tried {tried}; '
                              f'{damaged[0][0]}: {damaged[0][1]}). Restore them from a '
                              'backup, or move that folder aside to start over')
        return None
