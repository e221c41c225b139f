"""The sampling time grid: how many iterations, at which times, on which discrete ladder.

The reference's ``speed_up`` schedule: N = int(num_scales / speed_up) iterations, the SDE's
discrete ladder rebuilt with N levels, smallest time eps = base_eps * speed_up (base_eps 1e-5
for VE, 1e-3 for VP/subVP), times t_i = linspace(1, eps, N)[i]. ``sampling.steps`` overrides
N directly and keeps eps = base_eps. Iteration i uses ladder index N - 1 - i (the intended
value of floor(t_i (N - 1)), computed exactly instead of through float32 rounding).

A solver step sees one :class:`Interval` of the grid: [t_i, t_next_i] with t_next_i = t_{i+1}
and t_next_{N-1} = 0 (the last interval ends at the data), its ladder index and iteration i.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from flax import struct

from pds.method.sde import SDE, base_sampling_eps, sde_from_config
from pds.runtime.errors import ConfigError


@struct.dataclass
class Interval:
    """One step's interval (scalars inside a loop; leading axis N for the whole grid)."""

    t: jnp.ndarray  # float32, the start time
    t_next: jnp.ndarray  # float32, the end time (< t)
    index: jnp.ndarray  # int32, the SDE's discrete ladder index at t
    iteration: jnp.ndarray  # int32, i


@dataclasses.dataclass(frozen=True)
class TimeGrid:
    t: np.ndarray  # (N,) float32, decreasing from T to eps
    index: np.ndarray  # (N,) int32 ladder indices, N - 1 down to 0
    eps: float

    @property
    def num_steps(self) -> int:
        return int(self.t.shape[0])

    @property
    def t_next(self) -> np.ndarray:
        """(N,) float32: t_{i+1}, and 0 after the last point."""
        return np.append(self.t[1:], np.float32(0.0)).astype(np.float32)

    def intervals(self) -> Interval:
        """Every interval of the grid, stacked on a leading axis (the xs of a scan)."""
        return Interval(jnp.asarray(self.t), jnp.asarray(self.t_next), jnp.asarray(self.index),
                        jnp.arange(self.num_steps, dtype=jnp.int32))


def time_grid(n: int, eps: float, T: float = 1.0) -> TimeGrid:
    t = np.linspace(T, eps, n, dtype=np.float64).astype(np.float32)
    return TimeGrid(t=t, index=np.arange(n - 1, -1, -1, dtype=np.int32), eps=float(eps))


def num_iterations(config) -> tuple[int, float]:
    """(N, speed_up) from ``sampling.steps`` or ``sampling.speed_up``; validates both."""
    steps = config.sampling.get('steps', None)
    num_scales = int(config.model.num_scales)
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
            raise ConfigError('sampling.steps', steps, 'an integer >= 1 (or None to use '
                              'sampling.speed_up)')
        return int(steps), 1.0
    speed_up = config.sampling.speed_up
    if not isinstance(speed_up, int | float) or not speed_up > 0 or speed_up > num_scales:
        raise ConfigError('sampling.speed_up', speed_up,
                          f'a number in (0, model.num_scales={num_scales}]')
    return int(num_scales / speed_up), float(speed_up)


def sampling_schedule(config) -> tuple[SDE, TimeGrid]:
    """The SDE rebuilt with N ladder levels and its time grid (see module docstring)."""
    n, speed_up = num_iterations(config)
    sde = sde_from_config(config, n)
    return sde, time_grid(n, base_sampling_eps(sde) * speed_up, sde.T)
