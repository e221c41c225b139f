"""Checks of the whole configuration that main.py runs before any mode claims its outputs.

The modes check their own fields where they use them (a ConfigError naming the field); this
module adds what must hold for every mode, so that nothing fails late, after a workdir was
claimed or an ``--overwrite`` began:

- every float field is finite (no field of the config gives infinity a meaning);
- ``seed`` is an integer in [0, 2^31) (the noise streams fold ``seed + k`` into a uint32);
- ``model.name`` is a registered network or an exact target's score
  (:mod:`pds.analytic.targets`), and NCSN++'s Fourier embedding comes with continuous time;
- upper bounds where a value would look like a hang or exhaust memory (``MAX_*``);
- the ``data.photo*`` fields of ``data.dataset='photos'`` (pds/data/photos.py);
- for ``--mode=train``: a positive learning rate.
"""

from __future__ import annotations

import math
from typing import Any

from pds.method import tuned_tables
from pds.runtime import bounds, field_ranges
from pds.runtime.errors import ConfigError

SEED_LIMIT = 2 ** 31
MAX_STEPS = 100_000  # sampling.steps, model.num_scales: 50x the paper's 2000 iterations
MAX_STEPS_EACH = 1_000  # sampling.n_steps_each (corrector steps per iteration)
MAX_NUM_SAMPLES = 10_000_000  # eval.num_samples, bench.num_samples
MAX_IMAGE_SIZE = 4096  # data.image_size
MAX_CHANNELS = 4  # data.num_channels


def flat_fields(config, prefix: str = '') -> dict[str, Any]:
    """{'a.b.c': value} over every leaf of a ConfigDict (tuples and lists kept whole)."""
    out = {}
    for key, value in config.items():
        name = f'{prefix}{key}'
        if hasattr(value, 'items'):
            out.update(flat_fields(value, name + '.'))
        else:
            out[name] = value
    return out


def _floats(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, tuple | list):
        return [v for item in value for v in _floats(item)]
    return []


def check_finite(config) -> None:
    for name, value in flat_fields(config).items():
        if any(not math.isfinite(v) for v in _floats(value)):
            raise ConfigError(name, value, 'a finite number (no field gives inf or nan a '
                              'meaning)')


def _int_in(field: str, value: Any, low: int, high: int, what: str = '') -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(field, value, f'an integer in [{low}, {high}]{what}')


def check_config(config, mode: str) -> None:
    """ConfigError (one line: field, value, what is allowed) on the first violation."""
    check_finite(config)
    _int_in('seed', config.seed, 0, SEED_LIMIT - 1)
    names = _model_names()
    if config.model.name not in names:
        raise ConfigError('model.name', config.model.name,
                          'one of ' + ', '.join(repr(n) for n in names))
    if (config.model.name == 'ncsnpp' and not config.training.continuous
            and str(config.model.get('embedding_type', '')).lower() == 'fourier'):
        raise ConfigError('training.continuous', config.training.continuous,
                          "True for NCSN++ with model.embedding_type='fourier' (Fourier "
                          "features take continuous time; discrete training needs "
                          "embedding_type='positional')")
    _int_in('data.image_size', config.data.image_size, 2, MAX_IMAGE_SIZE)
    _int_in('data.num_channels', config.data.num_channels, 1, MAX_CHANNELS)
    s = config.sampling
    if s.get('steps') is not None:
        _int_in('sampling.steps', s.steps, 1, MAX_STEPS)
    _int_in('model.num_scales', config.model.num_scales, 1, MAX_STEPS)
    _int_in('sampling.n_steps_each', s.n_steps_each, 1, MAX_STEPS_EACH)
    _int_in('eval.num_samples', config.eval.num_samples, 1, MAX_NUM_SAMPLES)
    if 'bench' in config:
        _int_in('bench.num_samples', config.bench.num_samples, 1, MAX_NUM_SAMPLES)
    bounds.check_counts(config, mode)
    field_ranges.check_fields(config)
    tuned_tables.check_tuned(config, mode)
    if config.data.get('dataset') == 'photos':  # the data.photo* fields, without the images
        from pds.data.photos import photo_settings

        photo_settings(config)
    if mode == 'train':
        lr = config.optim.lr
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
            raise ConfigError('optim.lr', lr, 'a number > 0')


def _model_names() -> list[str]:
    from models.registry import registered_models
    from pds.analytic.targets import target_names

    return sorted([*registered_models(), *target_names()])
