"""Training checkpoints (pds/storage/training_checkpoints.py): per-leaf checksums catch bytes
flipped inside orbax's data files (which orbax itself reads back silently), a damaged newest
checkpoint falls back to the previous good one, and a workdir whose checkpoints are all
damaged is an error that does not suggest deleting them."""

from __future__ import annotations

import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pds.runtime.errors import ConfigError
from pds.storage.training_checkpoints import TrainCheckpoints, leaf_checksum
from pds.training.train import TrainState

# After a failed restore, orbax's background tasks may hit a closed asyncio loop; pytest
# reports that later, in whichever test the garbage collector runs.
pytestmark = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')

N = 8192  # float32 leaves of 32 KiB: large enough for orbax to store them in a data file


def make_state(step: int) -> TrainState:
    rng = np.random.default_rng(step)  # random bytes: compression leaves them as they are

    def leaf(*shape):
        return jnp.asarray(rng.standard_normal(shape), jnp.float32)

    return TrainState(jnp.int32(step), {'w': leaf(N), 'b': leaf(4, 4)}, (jnp.int32(step),),
                      {'w': leaf(N), 'b': leaf(4, 4)}, {})


def host(state: TrainState) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(state))]


def assert_same(a: TrainState, b: TrainState) -> None:
    la, lb = host(a), host(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def flip_middle(step_dir: str) -> str:
    """Invert 16 bytes in the middle of the largest file under ``<step>/state`` in place;
    returns its path. The size is unchanged, so only a content check can notice."""
    files = [os.path.join(d, f) for d, _, names in os.walk(os.path.join(step_dir, 'state'))
             for f in names]
    path = max(files, key=os.path.getsize)
    size = os.path.getsize(path)
    assert size > 4096, (path, size)  # an array data file, not an index node
    with open(path, 'r+b') as f:
        f.seek(size // 2)
        chunk = f.read(16)
        f.seek(size // 2)
        f.write(bytes(b ^ 0xFF for b in chunk))
    assert os.path.getsize(path) == size
    return path


@pytest.fixture
def saved(tmp_path):
    ckpts = TrainCheckpoints(str(tmp_path / 'w'))
    states = {s: make_state(s) for s in (4, 8)}
    for state in states.values():
        ckpts.save(state, 'snapshots', {'seed': 0})
    return ckpts, states


def step_dir(ckpts: TrainCheckpoints, step: int) -> str:
    return os.path.join(ckpts.directory('snapshots'), str(step))


def test_checksums_are_recorded_and_a_clean_restore_verifies(saved):
    ckpts, states = saved
    meta = ckpts.read_meta(8, 'snapshots')
    leaves = host(states[8])
    assert sorted(meta['checksums']) == [f'{i:05d}' for i in range(len(leaves))]
    assert meta['checksums']['00000'] == leaf_checksum(leaves[0])
    state, meta = ckpts.restore_latest(make_state(0), None)
    assert meta['step'] == 8
    assert_same(state, states[8])


def test_flipped_bytes_fall_back_to_the_previous_checkpoint(saved, caplog):
    ckpts, states = saved
    flip_middle(step_dir(ckpts, 8))
    with caplog.at_level(logging.WARNING):
        state, meta = ckpts.restore_latest(make_state(0), None)
    assert meta['step'] == 4 and int(state.step) == 4
    assert_same(state, states[4])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and 'snapshots/8' in r.getMessage()]
    assert warnings and 'damaged' in warnings[0], [r.getMessage() for r in caplog.records]
    assert "leaf .params['w']" in warnings[0] or "leaf .ema_params['w']" in warnings[0], \
        warnings[0]
    with pytest.raises(Exception, match='checksum'):
        ckpts.restore_step(8, 'snapshots', make_state(0), None)


def test_every_checkpoint_damaged_is_an_error_without_overwrite_advice(saved):
    ckpts, _ = saved
    for s in (4, 8):
        flip_middle(step_dir(ckpts, s))
    with pytest.raises(ConfigError) as err:
        ckpts.restore_latest(make_state(0), None)
    msg = str(err.value)
    assert err.value.field == '--workdir' and '\n' not in msg
    assert 'damaged' in msg and 'snapshots/8' in msg and 'snapshots/4' in msg, msg
    assert '--overwrite' not in msg, msg


def test_empty_workdir_has_no_checkpoint(tmp_path):
    assert TrainCheckpoints(str(tmp_path / 'w')).restore_latest(make_state(0), None) is None


def test_checkpoint_without_checksums_restores_unverified(saved):
    """A checkpoint written before checksums existed: meta without 'checksums'."""
    ckpts, states = saved
    meta_file = os.path.join(step_dir(ckpts, 8), 'meta', 'metadata')
    with open(meta_file) as f:
        meta = json.load(f)
    del meta['checksums']
    with open(meta_file, 'w') as f:
        json.dump(meta, f)
    state, meta = ckpts.restore_latest(make_state(0), None)
    assert meta['step'] == 8 and 'checksums' not in meta
    assert_same(state, states[8])
