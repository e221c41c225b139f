"""Ranges of the real-valued fields a run cannot use outside them, checked before any work.

Each would otherwise run and end late ("non-finite samples at iteration 0", a division by
zero, FD 4.5e61 with every value clipped) without naming the field:

- the noise range of the SDE in use: VE 0 < model.sigma_min < model.sigma_max (sigma(t) =
  sigma_min (sigma_max / sigma_min)^t needs both logs); VP and subVP
  0 <= model.beta_min < model.beta_max;
- ``sampling.edm.s_noise`` in (0, :data:`MAX_S_NOISE`] (EDM's Algorithm 2 scales its churn
  noise by it; EDM's tuned values lie in [1, 1.007]);
- the error-controlled solvers' tolerances at least float32's resolution 2^-23 (a sampler
  computing in float32 cannot meet a smaller one and shrinks its step to nothing):
  ``sampling.adaptive.rtol``, ``atol``, ``eps_rel``, ``eps_abs`` and the bench's ladders
  ``bench.rtols``, ``bench.eps_rels``;
- the time grid (:func:`check_time_grid`, called where the grid is built): its float64 times
  finite and strictly decreasing from T to eps, named by the field that placed them
  (``sampling.rho`` for the Karras grid).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pds.runtime.errors import ConfigError

MAX_S_NOISE = 2.0
FLOAT32_RESOLUTION = 2.0 ** -23  # spacing of float32 numbers at 1 (1.19e-7)


def _number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)


def _get(block, name: str, default: Any = None) -> Any:
    return block.get(name, default) if hasattr(block, 'get') else default


def check_noise_range(config) -> None:
    m = config.model
    sde = str(config.training.get('sde', 'vesde')).lower()
    if sde == 'vesde':
        lo, hi = m.get('sigma_min'), m.get('sigma_max')
        if not (_number(lo) and lo > 0):
            raise ConfigError('model.sigma_min', lo, 'a number > 0 (sigma(t) = sigma_min '
                              '(sigma_max / sigma_min)^t divides by it)')
        if not (_number(hi) and hi > lo):
            raise ConfigError('model.sigma_max', hi, f'a number > model.sigma_min={lo!r} '
                              '(the VE noise rises from sigma_min to sigma_max)')
    elif 'beta_min' in m:
        lo, hi = m.get('beta_min'), m.get('beta_max')
        if not (_number(lo) and lo >= 0):
            raise ConfigError('model.beta_min', lo, 'a number >= 0')
        if not (_number(hi) and hi > lo):
            raise ConfigError('model.beta_max', hi, f'a number > model.beta_min={lo!r} (the VP '
                              'noise schedule rises from beta_min to beta_max)')


def check_s_noise(config) -> None:
    v = _get(_get(config.sampling, 'edm'), 's_noise', 1.0)
    if not (_number(v) and 0 < v <= MAX_S_NOISE):
        raise ConfigError('sampling.edm.s_noise', v, f'a number in (0, {MAX_S_NOISE:g}] (the '
                          "churn noise's scale; EDM tunes it in [1, 1.007])")


def _tolerance(field: str, value: Any, high: float, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not (_number(value) and FLOAT32_RESOLUTION <= value <= high):
        raise ConfigError(field, value, f'a number in [{FLOAT32_RESOLUTION:.3g}, {high:g}] '
                          '(float32 sampling cannot meet a tolerance below its resolution '
                          '2^-23)')


def check_tolerances(config) -> None:
    a = _get(config.sampling, 'adaptive')
    if a is not None:
        _tolerance('sampling.adaptive.rtol', _get(a, 'rtol', 1e-5), 1.0)
        _tolerance('sampling.adaptive.atol', _get(a, 'atol', 1e-5), 1e3)
        _tolerance('sampling.adaptive.eps_rel', _get(a, 'eps_rel', 0.01), 1.0)
        _tolerance('sampling.adaptive.eps_abs', _get(a, 'eps_abs'), 1e3, allow_none=True)
    b = config.get('bench')
    for name in ('rtols', 'eps_rels'):
        values = _get(b, name, ()) if b is not None else ()
        if any(not (_number(v) and v >= FLOAT32_RESOLUTION) for v in values):
            raise ConfigError(f'bench.{name}', tuple(values), 'numbers >= '
                              f'{FLOAT32_RESOLUTION:.3g} (float32 sampling cannot meet a '
                              'tolerance below its resolution 2^-23)')


def check_fields(config) -> None:
    """Every range of the module docstring that the config alone decides."""
    check_noise_range(config)
    check_s_noise(config)
    check_tolerances(config)


def check_time_grid(t: np.ndarray, kind: str, rho: float) -> None:
    """ConfigError unless the float64 times ``t`` (N,) of a noise-level grid are finite and
    strictly decreasing, naming the field that placed them (``sampling.rho`` for 'karras')."""
    t = np.asarray(t, np.float64)
    if np.all(np.isfinite(t)) and (t.size == 1 or np.all(np.diff(t) < 0)):
        return
    if kind == 'karras':
        raise ConfigError('sampling.rho', rho, 'an exponent whose Karras grid of noise levels '
                          'is finite and strictly decreasing in float64 (EDM uses 7)')
    raise ConfigError('sampling.grid', kind, 'a grid whose times are finite and strictly '
                      'decreasing in float64 for this SDE')

