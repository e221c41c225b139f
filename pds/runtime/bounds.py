"""Bounds on every count a config sets, checked where the count is derived, not only where
it is typed.

A count sets work (iterations, score evaluations, training steps) or memory (the time grid,
batches, sample buffers). Each integer field of the config that feeds one is listed in
:data:`COUNT_FIELDS` with its interval and what the bound protects; :data:`NOT_COUNTS` lists
the integer fields that feed none (so that a test can walk every field and find each in one
list or the other). Counts derived from several fields are bounded too:

- the iteration count N of a run: ``sampling.steps``, or N = int(model.num_scales /
  sampling.speed_up) (the reference's schedule), at most :data:`MAX_ITERATIONS` (the grid
  holds a few float32 arrays of N, the compiled scan N steps: ``speed_up=1e-6`` once asked for
  1e9 iterations and 24 GB);
- score evaluations per sample, N (1 + sampling.n_steps_each) (an upper bound of every
  fixed-step solver's NFE: PC with its corrector steps, EDM's 2N - 1, DPM-Solver-3M's N + 1),
  at most :data:`MAX_NFE`; the same for every rung of ``tune.steps``, ``bench.steps`` and
  ``bench.spot_checks``, while ``bench.nfe`` budgets are at most :data:`MAX_ITERATIONS` (a
  budget's N never exceeds the budget);
- the error-controlled solvers: ``sampling.adaptive.max_steps`` attempted steps per example
  (dopri5: 6 evaluations each) within :data:`MAX_NFE`;
- ``training.n_iters`` and the training frequencies: the step counter is int32;
- per-batch arrays: batch x image_size^2 x num_channels at most :data:`MAX_BATCH_ELEMENTS`
  (XLA indexes buffers with int32; 8 GiB of float32).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from pds.runtime.errors import ConfigError

MAX_ITERATIONS = 100_000  # iterations of one run: 50x the paper's 2000
MAX_NFE = 1_000_000  # score evaluations per sample
MAX_SAMPLES = 10_000_000  # samples of one run, cell or statistic
MAX_RUNGS = 100  # entries of a ladder (tune.steps, bench.steps, bench.nfe, alphas, tolerances)
INT32_MAX = 2 ** 31 - 1  # training step counter, XLA buffer indices
MAX_BATCH_ELEMENTS = INT32_MAX  # batch x H x W x C of one batch
ADAPTIVE_NFE_PER_STEP = 6  # dopri5's evaluations per attempted step (FSAL: 6 new ones)

# field: (low, high, what the bound protects); tuples of integers are bounded per entry
COUNT_FIELDS: dict[str, tuple[int, int, str]] = {
    'sampling.steps': (1, MAX_ITERATIONS, 'iterations of a run'),
    'model.num_scales': (1, MAX_ITERATIONS, 'levels of the discrete ladder (iterations at '
                         'speed_up 1)'),
    'sampling.n_steps_each': (1, 1_000, 'corrector steps per iteration'),
    'eval.bpd_steps': (1, MAX_ITERATIONS, 'fixed-grid steps of the likelihood ODE'),
    'eval.bpd_max_steps': (1, MAX_NFE // ADAPTIVE_NFE_PER_STEP,
                           'attempted dopri5 steps per example of the likelihood ODE'),
    'eval.bpd_num_probes': (0, 1_024, 'Hutchinson probes, each one JVP per score evaluation '
                            '(0: the exact divergence)'),
    'sampling.adaptive.max_steps': (1, MAX_NFE // ADAPTIVE_NFE_PER_STEP,
                                    f'attempted steps per example (score evaluations <= '
                                    f'{MAX_NFE})'),
    'sampling.pds.num_stat_images': (1, MAX_SAMPLES, 'images held for the mask statistic'),
    'tune.steps': (1, MAX_ITERATIONS, 'iterations of a tuned cell'),
    'tune.refine': (0, 100, 'golden-section evaluations per iteration count'),
    'tune.num_samples': (2, MAX_SAMPLES, 'samples per sampled cell (the FD needs two)'),
    'tune.batch_size': (1, MAX_SAMPLES, 'samples per compiled round'),
    'bench.steps': (1, MAX_ITERATIONS, 'iterations of a bench cell'),
    'bench.nfe': (1, MAX_ITERATIONS, 'score evaluations of a budget (its N is at most the '
                  'budget)'),
    'bench.num_samples': (2, MAX_SAMPLES, 'samples per sampled cell (the FD needs two)'),
    'bench.batch_size': (1, MAX_SAMPLES, 'samples per compiled round'),
    'bench.converged_steps': (0, MAX_ITERATIONS, "iterations of the network's converged "
                              'samples (0: none)'),
    'bench.moment_images': (2, 1_000_000, 'training images of the data moments, held in '
                            'memory as float64'),
    'bench.memorisation_images': (1, 1_000_000, 'training images the nearest-neighbour '
                                  'search holds'),
    'eval.num_samples': (1, MAX_SAMPLES, 'samples of a run'),
    'eval.batch_size': (1, MAX_SAMPLES, 'samples per compiled round'),
    'eval.inception_batch_size': (1, MAX_SAMPLES, 'images per Inception call'),
    'eval.is_splits': (1, MAX_SAMPLES, 'Inception Score splits'),
    'eval.kid_subset_size': (1, MAX_SAMPLES, 'samples per KID subset'),
    'eval.kid_num_subsets': (1, 100_000, 'KID subsets'),
    'training.n_iters': (0, INT32_MAX, 'training steps (the step counter is int32)'),
    'training.batch_size': (1, MAX_SAMPLES, 'examples per training step'),
    'training.n_jitted_steps': (1, 10_000, 'training steps per compiled call'),
    'training.log_freq': (1, INT32_MAX, 'steps (int32 counter)'),
    'training.eval_freq': (1, INT32_MAX, 'steps (int32 counter)'),
    'training.snapshot_freq': (1, INT32_MAX, 'steps (int32 counter)'),
    'training.snapshot_freq_for_preemption': (1, INT32_MAX, 'steps (int32 counter)'),
    'training.grad_shards': (0, MAX_SAMPLES, 'gradient microbatches'),
    'optim.warmup': (0, INT32_MAX, 'steps (int32 counter)'),
    'data.image_size': (2, 4096, 'pixels per side'),
    'data.num_channels': (1, 4, 'channels per pixel'),
    'data.shuffle_buffer': (1, MAX_SAMPLES, 'examples held by the shuffle buffer'),
    'model.nf': (1, 4096, 'channels of the network'),
    'model.ch_mult': (1, 64, 'channel multipliers of the network'),
    'model.num_res_blocks': (0, 64, 'blocks per resolution of the network'),
}
# ladders: at most MAX_RUNGS entries each
LADDERS = ('tune.steps', 'tune.alphas', 'bench.steps', 'bench.alphas', 'bench.spot_checks',
           'bench.nfe', 'bench.rtols', 'bench.eps_rels', 'model.ch_mult')
# integer fields that set no amount of work or memory, and why
NOT_COUNTS: dict[str, str] = {
    'seed': 'a random seed (checked in [0, 2^31))',
    'eval.begin_ckpt': 'a checkpoint step selecting stored steps (no work beyond them)',
    'eval.end_ckpt': 'a checkpoint step selecting stored steps (no work beyond them)',
    'sampling.progress_every': 'how often the bar updates',
    'model.conv_size': 'the network architecture (a kernel size)',
    'model.fir_kernel': 'the network architecture (FIR filter taps)',
    'model.fourier_scale': 'a scale of the Fourier time embedding',
    'model.attn_resolutions': 'resolutions with attention (at most data.image_size)',
    'data.photo_downscale': 'a box-averaging factor of the photographs: a larger one leaves '
    'fewer patches, and one that leaves none is refused (pds.data.photos)',
    'data.photo_gap': 'pixels kept between training patches and held-out cells: a larger gap '
    'leaves fewer patches, and one that leaves none is refused (pds.data.photos)',
}


def _is_int(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, numbers.Integral)  # numpy's too


def _field(config, name: str, default: Any = None) -> Any:
    node = config
    for part in name.split('.'):
        if not hasattr(node, 'get') or part not in node:
            return default
        node = node[part]
    return node


def check_count(field: str, value: Any, low: int, high: int, what: str) -> None:
    """ConfigError unless ``value`` (or each entry of a tuple) is an integer in [low, high]."""
    values = list(value) if isinstance(value, tuple | list) else [value]
    if not all(_is_int(v) and low <= v <= high for v in values):
        kind = 'integers' if isinstance(value, tuple | list) else 'an integer'
        raise ConfigError(field, value, f'{kind} in [{low}, {high}] ({what})')


def iterations(config) -> int:
    """The iteration count N of a run (``sampling.steps``, or int(num_scales / speed_up)),
    ConfigError naming the field that sets it when N is outside [1, MAX_ITERATIONS]."""
    steps = _field(config, 'sampling.steps')
    if steps is not None:
        check_count('sampling.steps', steps, 1, MAX_ITERATIONS, 'iterations of a run')
        return int(steps)
    speed_up, scales = _field(config, 'sampling.speed_up', 1.0), config.model.num_scales
    check_count('model.num_scales', scales, 1, MAX_ITERATIONS, 'levels of the ladder')
    ok = (not isinstance(speed_up, bool) and isinstance(speed_up, int | float)
          and math.isfinite(speed_up) and 0 < speed_up <= scales)
    n = int(scales / speed_up) if ok else 0
    if not 1 <= n <= MAX_ITERATIONS:
        raise ConfigError('sampling.speed_up', speed_up, f'a number in [{scales / MAX_ITERATIONS:g}'
                          f', model.num_scales={scales}]: N = int(num_scales / speed_up) '
                          f'iterations, at most {MAX_ITERATIONS} (the time grid and the '
                          'compiled loop grow with N)')
    return n


def check_nfe(field: str, value: Any, n: int, n_steps_each: int) -> None:
    """ConfigError unless N (1 + n_steps_each) score evaluations stay within MAX_NFE."""
    if n * (1 + n_steps_each) > MAX_NFE:
        raise ConfigError(field, value, f'at most {MAX_NFE} score evaluations per sample: '
                          f'{n} iterations x (1 + sampling.n_steps_each={n_steps_each}) '
                          f'= {n * (1 + n_steps_each)}')


def check_counts(config, mode: str) -> None:
    """Every count of :data:`COUNT_FIELDS` and the derived ones (module docstring)."""
    for name, (low, high, what) in COUNT_FIELDS.items():
        value = _field(config, name)
        if value is None:
            continue
        if name == 'eval.num_samples' and mode == 'sample' and config.data.dataset in (
                'gaussian_field', 'gaussian_mixture'):
            low, what = 2, 'samples of a run (the Frechet distance it reports needs two)'
        check_count(name, value, low, high, what)
    for name in LADDERS:
        value = _field(config, name)
        if isinstance(value, tuple | list) and len(value) > MAX_RUNGS:
            raise ConfigError(name, f'<{len(value)} entries>', f'at most {MAX_RUNGS} entries')
    each = int(config.sampling.n_steps_each)
    n = iterations(config)
    steps = _field(config, 'sampling.steps')
    if steps is None:
        check_nfe('sampling.speed_up', _field(config, 'sampling.speed_up'), n, each)
    else:
        check_nfe('sampling.steps', steps, n, each)
    for name in ('tune.steps', 'bench.steps'):
        ladder = _field(config, name) or ()
        for rung in ladder:
            check_nfe(name, ladder, rung, each)
    spots = _field(config, 'bench.spot_checks') or ()
    for item in spots:
        if isinstance(item, tuple | list) and item and _is_int(item[0]):
            if not 1 <= item[0] <= MAX_ITERATIONS:
                raise ConfigError('bench.spot_checks', spots, 'pairs (iterations, alpha) with '
                                  f'iterations in [1, {MAX_ITERATIONS}]')
            check_nfe('bench.spot_checks', spots, item[0], each)
    _check_batch_memory(config)


def _check_batch_memory(config) -> None:
    """batch x H x W x C of every batch size within MAX_BATCH_ELEMENTS."""
    pixels = config.data.image_size ** 2 * config.data.num_channels
    for name in ('training.batch_size', 'eval.batch_size', 'bench.batch_size',
                 'tune.batch_size'):
        batch = _field(config, name)
        if _is_int(batch) and batch * pixels > MAX_BATCH_ELEMENTS:
            raise ConfigError(name, batch, f'at most {MAX_BATCH_ELEMENTS // pixels} (a batch '
                              f'of {pixels} values per image must index with int32: at most '
                              f'{MAX_BATCH_ELEMENTS} values)')
