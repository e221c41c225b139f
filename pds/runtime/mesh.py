"""The device mesh: one data-parallel axis over every device of every process.

Samplers and training steps are written once with ``shard_map`` over this mesh: the batch is
split on axis 'data', parameters are replicated. The same code runs on one CPU device, eight
GPUs or a TPU pod slice.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from pds.runtime.errors import ConfigError

DATA_AXIS = 'data'


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: every device of every process), ordered by
    (process, device id): each process holds one contiguous block of the batch, the rows its
    input pipeline reads (``pds.data.pipelines.process_share``) and its output files hold."""
    devices = jax.devices() if devices is None else devices
    ordered = sorted(devices, key=lambda d: (d.process_index, d.id))
    return Mesh(np.asarray(ordered), (DATA_AXIS,))


def check_batch(field: str, batch: int, mesh: Mesh) -> int:
    """Per-device batch; the global batch must split evenly over the mesh."""
    n = mesh.devices.size
    if not isinstance(batch, int) or batch < 1 or batch % n:
        raise ConfigError(field, batch, f'a positive multiple of the device count ({n})')
    return batch // n


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree, mesh: Mesh):
    """Place a host pytree on every device once (no per-device host copies)."""
    return jax.device_put(tree, replicated(mesh))
