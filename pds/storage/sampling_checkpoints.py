"""The checkpoint store: sampling variables of a network under ``<workdir>/checkpoints``.

Layout (orbax CheckpointManager, one folder per step)::

    <workdir>/checkpoints/<step>/variables/   orbax PyTree: the flax variables dict
                                              {'params': {...}, <state collections>...},
                                              float32 arrays in flax layout (conv kernels HWIO)
    <workdir>/checkpoints/<step>/meta/        JSON: {'step': int, ...provenance}

Orbax writes each step under a temporary name and renames it when complete, so a step folder
either holds a whole checkpoint or is absent. In a one-process run :func:`save_variables` goes
further and lets orbax write into a hidden staging folder ``.saving-<step>-<pid>-<ns>`` beside
the steps, renaming the finished step into place: a process killed while saving leaves only
dot-prefixed folders, never a visible ``<step>.orbax-checkpoint-tmp`` (the next save deletes
staging folders of processes that are gone). :func:`restore_variables` checks the stored tree
against the network of the config before loading any array, and a mismatch is a
:class:`~pds.runtime.errors.ConfigError` naming the first differing parameter and both shapes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging as absl_logging

from pds.runtime import distributed
from pds.runtime.errors import ConfigError
from pds.storage import checksums

ITEMS = ('variables', 'meta')


def _ocp():
    import orbax.checkpoint as ocp

    return ocp


class _OrbaxInfoFilter(logging.Filter):
    """Drop orbax's INFO/DEBUG chatter (dozens of lines per save) from the absl logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or '/orbax/' not in record.pathname


@contextlib.contextmanager
def orbax_manager(directory: str, arrays: str, create: bool, max_to_keep: int | None = None
                  ) -> Iterator[Any]:
    """An orbax CheckpointManager over ``directory`` (synchronous saves, orbax's INFO chatter
    muted), each step holding a PyTree item ``arrays`` and a JSON item 'meta'; closed on exit.
    """
    ocp = _ocp()
    quiet = _OrbaxInfoFilter()
    absl_logger = logging.getLogger('absl')
    absl_logger.addFilter(quiet)
    try:
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create,
                                               enable_async_checkpointing=False)
        handlers = {arrays: ocp.StandardCheckpointHandler(),
                    'meta': ocp.JsonCheckpointHandler()}
        with ocp.CheckpointManager(os.path.abspath(directory), options=options,
                                   item_handlers=handlers) as manager:
            yield manager
    finally:
        absl_logger.removeFilter(quiet)


def _manager(ckpt_dir: str, create: bool):
    """The sampling store's manager (item 'variables')."""
    return orbax_manager(ckpt_dir, 'variables', create)


def stored_steps(ckpt_dir: str) -> list[int]:
    """Steps held in the store, ascending ([] when the folder is absent or holds none)."""
    if not os.path.isdir(ckpt_dir):
        return []
    with _manager(ckpt_dir, create=False) as manager:
        return sorted(int(s) for s in manager.all_steps())


def latest_step(ckpt_dir: str) -> int | None:
    """The newest step in the store, or None when it holds none."""
    steps = stored_steps(ckpt_dir)
    return steps[-1] if steps else None


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise ConfigError('step', step, 'an integer >= 0')
    return int(step)


def _plain_tree(tree: Any) -> Any:
    """Nested dicts of numpy arrays (FrozenDicts and jax arrays converted), keys in order."""
    if isinstance(tree, Mapping):
        return {str(k): _plain_tree(v) for k, v in tree.items()}
    return np.asarray(tree)


def _set_aside(step_dir: str) -> str:
    """Rename an existing step folder to a hidden name orbax does not list as a step."""
    parent, name = os.path.split(step_dir)
    aside = os.path.join(parent, f'.replaced-{name}-{time.time_ns()}')
    os.rename(step_dir, aside)
    return aside


STAGING_PREFIX = '.saving-'


def _remove_stale_staging(ckpt_dir: str) -> list[str]:
    """Delete staging folders ``.saving-<step>-<pid>-<ns>`` whose process no longer runs on
    this machine (a save that was killed); returns their names."""
    removed = []
    for name in os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else []:
        parts = name[len(STAGING_PREFIX):].split('-')
        if not name.startswith(STAGING_PREFIX) or len(parts) != 3 or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
            continue  # still running (or another user's process)
        except ProcessLookupError:
            pass
        except OSError:
            continue
        shutil.rmtree(os.path.join(ckpt_dir, name), ignore_errors=True)
        removed.append(name)
    if removed:
        absl_logging.warning('removed unfinished checkpoint saves: %s', removed)
    return removed


def save_variables(ckpt_dir: str, variables: Mapping[str, Any], step: int,
                   overwrite: bool = False, metadata: Mapping[str, Any] | None = None) -> str:
    """Write ``variables`` (flax variables dict) as step ``step``; returns the step folder.

    ``metadata`` (JSON-serialisable) is stored beside the arrays with ``step`` added. An
    existing step is a ConfigError unless ``overwrite``; then the old step is set aside, the
    new one put in place, and the old one deleted (a crash leaves the old one under a hidden
    name). In a one-process run the step is written in a hidden staging folder and renamed
    into place when complete (module docstring); in a multi-process job orbax writes it in
    place under its own temporary name.
    """
    step = _check_step(step)
    ckpt_dir = os.path.abspath(ckpt_dir)
    step_dir = os.path.join(ckpt_dir, str(step))
    if os.path.exists(step_dir) and not overwrite:
        raise ConfigError('--workdir', os.path.dirname(ckpt_dir),
                          f'a directory without a checkpoint at step {step} ({step_dir} '
                          'exists; pass --overwrite to replace it)')
    staged = jax.process_count() == 1
    if staged:
        _remove_stale_staging(ckpt_dir)
        root = os.path.join(ckpt_dir, f'{STAGING_PREFIX}{step}-{os.getpid()}-{time.time_ns()}')
        aside = None
    else:
        root = ckpt_dir
        aside = _set_aside(step_dir) if os.path.exists(step_dir) else None
    ocp = _ocp()
    plain = _plain_tree(variables)
    meta = {**(metadata or {}), 'step': step, 'checksums': checksums.tree_checksums(plain)}
    args = ocp.args.Composite(variables=ocp.args.StandardSave(plain),
                              meta=ocp.args.JsonSave(meta))
    try:
        with _manager(root, create=True) as manager:
            saved = manager.save(step, args=args, force=True)
            manager.wait_until_finished()
        if not saved:
            raise RuntimeError(f'orbax declined to save step {step} in {ckpt_dir}')
        if jax.process_index() == 0:  # every file of the step, the leaf sums' meta included
            checksums.write_manifest(os.path.join(root, str(step)))
        distributed.barrier(f'checkpoints:{step}:manifest')
        if staged:
            aside = _set_aside(step_dir) if os.path.exists(step_dir) else None
            os.rename(os.path.join(root, str(step)), step_dir)
    except BaseException:
        if aside is not None and not os.path.exists(step_dir):
            os.rename(aside, step_dir)
        raise
    finally:
        if staged:
            shutil.rmtree(root, ignore_errors=True)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return step_dir


def delete_steps(ckpt_dir: str, keep: int) -> list[int]:
    """Delete every step but ``keep``; returns the deleted steps."""
    doomed = [s for s in stored_steps(ckpt_dir) if s != keep]
    if doomed:
        with _manager(ckpt_dir, create=False) as manager:
            for s in doomed:
                manager.delete(s)
    return doomed


def format_shape(shape: tuple[int, ...]) -> str:
    return str(tuple(int(d) for d in shape))


def _path_name(path: tuple[str, ...]) -> str:
    """'ResnetBlockBigGANpp_3/Conv_0/kernel' for ('params', ...); other collections keep
    their name as the first component."""
    return '/'.join(path[1:] if path and path[0] == 'params' else path)


def tree_mismatch(found: Any, expected: Any, path: tuple[str, ...] = ()) -> str | None:
    """The first difference between two variable trees, as a sentence, or None.

    Both are nested mappings whose leaves have ``.shape``; ``found`` is what a file holds,
    ``expected`` what the config's network needs. Keys are visited in ``expected``'s order,
    then keys only ``found`` has.
    """
    found_map, expected_map = isinstance(found, Mapping), isinstance(expected, Mapping)
    if not found_map and not expected_map:
        if tuple(found.shape) != tuple(expected.shape):
            return (f'parameter {_path_name(path)} has shape {format_shape(found.shape)} in '
                    f'the file but {format_shape(expected.shape)} for this config')
        return None
    if found_map != expected_map:
        what = 'a group of parameters' if found_map else 'one array'
        return f'parameter {_path_name(path)} is {what} in the file, not for this config'
    for key in expected:
        if key not in found:
            return f'parameter {_path_name((*path, key))} is missing from the file'
        diff = tree_mismatch(found[key], expected[key], (*path, key))
        if diff:
            return diff
    for key in found:
        if key not in expected:
            return f'the file has parameter {_path_name((*path, key))}, which this config lacks'
    return None


def check_variables(found: Any, expected: Any, field: str, value: Any) -> None:
    """Raise ConfigError(field, value, <first difference>) unless the trees match."""
    diff = tree_mismatch(found, expected, ())
    if diff:
        raise ConfigError(field, value, diff)


def _stored_tree(metadata: Any) -> Any:
    tree = getattr(metadata, 'tree', metadata)
    if isinstance(tree, Mapping):
        return {k: _stored_tree(v) for k, v in tree.items()}
    return tree


def _read_step(ckpt_dir: str, step: int | None) -> int:
    steps = stored_steps(ckpt_dir)
    if not steps:
        raise ConfigError('checkpoint', ckpt_dir, 'a checkpoint store written by '
                          '--mode=convert (it holds no complete step)')
    if step is None:
        return steps[-1]
    if step not in steps:
        raise ConfigError('checkpoint step', step, f'one of the stored steps {steps}')
    return int(step)


def read_metadata(ckpt_dir: str, step: int | None = None) -> dict[str, Any]:
    """The JSON metadata of ``step`` (default: the newest), including its 'step'."""
    step = _read_step(ckpt_dir, step)
    ocp = _ocp()
    with _manager(ckpt_dir, create=False) as manager:
        out = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(out['meta'])


def restore_variables(ckpt_dir: str, config, step: int | None = None) -> dict[str, Any]:
    """The variables dict of ``step`` (default: the newest) as float32 jax arrays.

    The stored tree is checked against ``models.registry.abstract_variables(config)`` before
    any array is read; a difference is a ConfigError naming the first differing parameter.
    """
    from models.registry import abstract_variables

    step = _read_step(ckpt_dir, step)
    ocp = _ocp()
    step_dir = os.path.join(ckpt_dir, str(step))
    expected = abstract_variables(config)
    verified = checksums.verify_manifest(step_dir)
    try:
        with _manager(ckpt_dir, create=False) as manager:
            stored = _stored_tree(manager.item_metadata(step)['variables'])
            if not isinstance(stored, Mapping):
                raise ConfigError('checkpoint', step_dir, 'a readable orbax checkpoint (its '
                                  'variables/_METADATA is missing or unreadable)')
            check_variables(stored, expected, 'checkpoint', step_dir)
            restored = manager.restore(step, args=ocp.args.Composite(
                variables=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
        verify_leaves(restored['variables'], restored['meta'], step_dir, verified)
    except ConfigError:
        raise
    except Exception as err:  # orbax/tensorstore errors on damaged files
        raise ConfigError('checkpoint', step_dir, 'a readable orbax checkpoint '
                          f'({type(err).__name__}: {_first_line(err)})') from None
    absl_logging.info('restored checkpoint step %d from %s', step, ckpt_dir)
    return jax.tree_util.tree_map(lambda a, e: jnp.asarray(a, e.dtype),
                                  dict(restored['variables']), expected)


def verify_leaves(variables: Any, meta: Mapping[str, Any], step_dir: str,
                  manifest: bool) -> None:
    """Compare the restored ``variables`` with the per-leaf sha256 of ``meta['checksums']``:
    ConfigError naming the first parameter that differs. A checkpoint written before
    checksums existed (neither leaf sums nor a manifest) loads with one warning per process;
    one with leaf sums but no manifest, or a manifest but no leaf sums, was damaged."""
    recorded = meta.get('checksums') if isinstance(meta, Mapping) else None
    if recorded is None and not manifest:
        _warn_unverified(os.path.dirname(step_dir))
        return
    if not isinstance(recorded, Mapping) or not manifest:
        missing = 'leaf checksums in meta' if manifest else checksums.MANIFEST
        raise ConfigError('checkpoint', step_dir, f'a checkpoint with its {missing} (the '
                          f'other record is there): the checkpoint is damaged; '
                          f'{checksums.REPAIR}')
    diff = checksums.first_difference(checksums.tree_checksums(_plain_tree(variables)),
                                      recorded)
    if diff is not None:
        name, reason = diff
        raise ConfigError('checkpoint', step_dir, f'parameter {name} matching its recorded '
                          f'sha256 ({reason}): the checkpoint is damaged; {checksums.REPAIR}')


@functools.cache
def _warn_unverified(ckpt_dir: str) -> None:
    absl_logging.warning('%s: sampling checkpoints written before checksums existed load '
                         'unverified (re-export or re-convert them to add checksums)', ckpt_dir)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:240] if text else type(err).__name__
