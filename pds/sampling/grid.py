"""The sampling time grid: how many iterations, at which times, on which discrete ladder.

The reference's ``speed_up`` schedule: N = int(num_scales / speed_up) iterations, the SDE's
discrete ladder rebuilt with N levels, smallest time eps = base_eps * speed_up (base_eps 1e-5
for VE, 1e-3 for VP/subVP), times t_i = linspace(1, eps, N)[i]. ``sampling.steps`` overrides
N directly and keeps eps = base_eps. Iteration i uses ladder index N - 1 - i (the intended
value of floor(t_i (N - 1)), computed exactly instead of through float32 rounding).

A solver step sees one :class:`Interval` of the grid: [t_i, t_next_i] with t_next_i = t_{i+1}
and t_next_{N-1} = 0 (the last interval ends at the data), its ladder index and iteration i.

``sampling.grid`` places the N times between T and eps (the same N and eps):

- 'ladder' (default): t uniform, the reference's (and score_sde's) grid;
- 'karras': EDM's (Karras et al. 2022, eq. 5) noise levels
  sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
  rho = ``sampling.rho`` (7), dense at small noise;
- 'logsnr': log sigma uniform (DPM-Solver's log-SNR uniform grid: lambda = -log sigma);

with sigma(t) the marginal's noise-to-signal ratio (:func:`pds.method.sde.scale_and_sigma`;
sigma_max = sigma(T), sigma_min = sigma(eps)) and t recovered from sigma by interpolating
log sigma(t) on a dense grid (monotone for every SDE here). The ladder index of a time off
the uniform grid is that of the nearest uniform time.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from flax import struct

from pds.method.sde import SDE, base_sampling_eps, scale_and_sigma, sde_from_config
from pds.runtime import bounds, field_ranges
from pds.runtime.errors import ConfigError, check_choice

GRIDS = ('ladder', 'karras', 'logsnr')


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


def sigma_of_t(sde: SDE, t: np.ndarray) -> np.ndarray:
    """sigma(t) (float64) of :func:`pds.method.sde.scale_and_sigma`."""
    return np.asarray(scale_and_sigma(sde, jnp.asarray(t, jnp.float32))[1], np.float64)


def t_of_sigma(sde: SDE, sigma: np.ndarray, eps: float, T: float) -> np.ndarray:
    """The times in [eps, T] of noise levels ``sigma`` (interpolating log sigma(t) on 20,001
    times; the ends are exact)."""
    dense = np.linspace(eps, T, 20001)
    log_s = np.log(sigma_of_t(sde, dense))
    return np.interp(np.log(sigma), log_s, dense)


def noise_level_grid(sde: SDE, n: int, eps: float, kind: str, rho: float = 7.0,
                     T: float = 1.0) -> TimeGrid:
    """n times from T to eps placed by their noise levels (module docstring)."""
    if kind == 'ladder' or n == 1:
        return time_grid(n, eps, T)
    s_max, s_min = sigma_of_t(sde, np.array([T, eps]))
    u = np.linspace(0.0, 1.0, n)
    if kind == 'karras':
        with np.errstate(over='ignore', invalid='ignore'):  # non-finite: refused below
            sigma = (s_max ** (1 / rho) + u * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    else:  # 'logsnr'
        sigma = np.exp(np.log(s_max) + u * (np.log(s_min) - np.log(s_max)))
    t = t_of_sigma(sde, sigma, eps, T)
    t[0], t[-1] = T, eps
    field_ranges.check_time_grid(t, kind, rho)
    index = np.rint((t - eps) / (T - eps) * (n - 1)).astype(np.int32)
    return TimeGrid(t=t.astype(np.float32), index=index, eps=float(eps))


def num_iterations(config) -> tuple[int, float]:
    """(N, speed_up) from ``sampling.steps`` or ``sampling.speed_up``; validates both."""
    steps = config.sampling.get('steps', None)
    num_scales = int(config.model.num_scales)
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
            raise ConfigError('sampling.steps', steps, 'an integer >= 1 (or None to use '
                              'sampling.speed_up)')
        return bounds.iterations(config), 1.0  # int(steps), within MAX_ITERATIONS
    speed_up = config.sampling.speed_up
    if not isinstance(speed_up, int | float) or not speed_up > 0 or speed_up > num_scales:
        raise ConfigError('sampling.speed_up', speed_up,
                          f'a number in (0, model.num_scales={num_scales}]')
    return bounds.iterations(config), float(speed_up)  # int(num_scales / speed_up), bounded


def sampling_schedule(config) -> tuple[SDE, TimeGrid]:
    """The SDE rebuilt with N ladder levels and its time grid (see module docstring)."""
    n, speed_up = num_iterations(config)
    sde = sde_from_config(config, n)
    kind = config.sampling.get('grid', 'ladder')
    check_choice('sampling.grid', kind, GRIDS)
    rho = config.sampling.get('rho', 7.0)
    if isinstance(rho, bool) or not isinstance(rho, int | float) or not rho > 0:
        raise ConfigError('sampling.rho', rho, 'a number > 0 (EDM uses 7)')
    eps = base_sampling_eps(sde) * speed_up
    return sde, noise_level_grid(sde, n, eps, kind, float(rho), sde.T)
