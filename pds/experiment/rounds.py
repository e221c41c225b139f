"""Sampling an experiment in rounds: round k holds the examples with global indices
[k B, (k + 1) B) for batch size B, so a sample depends only on the settings, the seed and its
index, never on the device or process count, and any subset of rounds can be drawn on its own
(resuming runs draw the missing ones). One round is in host memory at a time; each process
fetches only its own rows. Also: the sampler's settings as reports show them, and reading a
``--mode=sample`` run's files back in global order (:func:`load_samples`).
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import time
from collections.abc import Callable, Collection

import jax
import numpy as np
from absl import logging

from pds.analytic.fd import FourierMoments
from pds.experiment.assemble import Experiment
from pds.runtime import distributed
from pds.runtime.errors import ConfigError, RunError
from pds.runtime.mesh import data_mesh, replicate, replicated
from pds.runtime.progress import IterationBar, round_bar
from pds.sampling.sampler import Sampler, build_sampler
from pds.sampling.solver import Solver, loop_length, takes_own_steps
from pds.storage import readers

CLIP_WARNING = 0.05  # warn when more of the sample values than this leave the data range


@dataclasses.dataclass
class RunResult:
    nfe: int | float  # score evaluations per example: an int when every example used the same
    nfe_max: int
    iterations: int | float  # steps attempted per example (the grid's N; adaptive: the mean)
    compile_seconds: float
    sampling_seconds: float
    num_samples: int
    moments: FourierMoments | None  # summed over every process's rows
    clipped_fraction: float = 0.0  # of sample values outside the data range (clipped in uint8)
    iterations_max: int = 0  # the most steps an example attempted
    # iterations of the compiled loop over every round drawn (a while loop runs until the
    # slowest example of its round is done): the count seconds_per_iteration divides by
    loop_iterations: int = 0


@dataclasses.dataclass
class Round:
    """Round k as this process sees it: its rows (global ``index`` < num_samples) and the
    whole sharded round ``array`` (for collectives such as ``distributed.first_rows``)."""

    k: int
    index: np.ndarray  # (n,) int64
    rows: np.ndarray  # (n, H, W, C) float32
    array: jax.Array  # (B, H, W, C), sharded over the mesh
    valid: int  # rows of the round below num_samples (all processes)
    nfe: np.ndarray  # (n,) int32 score evaluations of each row


def count_rounds(num_samples, batch_size) -> int:
    for field, v in (('eval.num_samples', num_samples), ('eval.batch_size', batch_size)):
        if not isinstance(v, int) or v < 1:
            raise ConfigError(field, v, 'an integer >= 1')
    return math.ceil(num_samples / batch_size)


def sample_rounds(exp: Experiment, solver: Solver, config, num_samples: int,
                  batch_size: int, on_round: Callable[[Round], None] | None = None,
                  desc: str = 'sampling', only: Collection[int] | None = None,
                  compiled: CompiledSampler | None = None) -> RunResult:
    """Sample ``num_samples`` in rounds; ``on_round(round)`` gets each round on every process.

    Round k covers global example indices [k B, (k + 1) B), so samples do not depend on the
    device or process count, and a round can be drawn on its own: ``only`` (default: all)
    names the rounds to draw (resuming runs skip the rest). Streams: only one round is in
    host memory at a time, and each process fetches only its own rows. ``compiled`` (from
    :func:`compile_sampler`; built here when None) lets runs that differ only in
    ``exp.variables`` share one compiled sampler (``compile_seconds`` is then 0).
    """
    todo = [k for k in range(count_rounds(num_samples, batch_size))
            if only is None or k in only]
    mesh = data_mesh()
    main = distributed.is_main()
    own = compiled is None
    if own:
        compiled = compile_sampler(exp, solver, config, batch_size, mesh, desc)
    sampler, bar = compiled.sampler, compiled.bar
    bar.bar.set_description(desc)
    variables = replicate(exp.variables, mesh)
    precond = replicate(exp.precond, mesh)
    compile_s = compiled.compile_seconds if own else 0.0
    moments = None
    if exp.field is not None:
        h, w, c = exp.image_shape
        moments = FourierMoments(np.asarray(exp.field.mean), 0, np.zeros((h, w, c), complex),
                                 np.zeros((h, w, c)))
    counts = {'nfe_sum': 0, 'nfe_max': 0, 'nfe_min': np.iinfo(np.int64).max, 'clipped': 0,
              'values': 0, 'steps_sum': 0, 'steps_max': 0,
              'steps_min': np.iinfo(np.int64).max}
    loop_steps = []  # per round: the most steps of this process's rows (padding included)
    low = -1.0 if config.data.centered else 0.0
    t0 = time.perf_counter()
    with round_bar(len(todo), desc, enabled=main) as rbar:
        for k in todo:
            bar.reset()
            out = sampler.run(variables, precond, config.seed, k * batch_size)
            index, rows = distributed.local_rows(out.x)
            index = index + k * batch_size
            keep = index < num_samples
            r = Round(k, index[keep], rows[keep], out.x,
                      min(batch_size, num_samples - k * batch_size),
                      distributed.local_rows(out.nfe)[1][keep])
            check_finite_round(k, r.index, distributed.local_rows(out.nonfinite_at)[1][keep],
                               exp, solver, config)
            steps = distributed.local_rows(out.steps)[1]
            loop_steps.append(int(steps.max()) if len(steps) else 0)
            steps = steps[keep]
            counts['nfe_sum'] += int(r.nfe.sum())
            counts['steps_sum'] += int(steps.sum())
            if len(r.nfe):
                counts['nfe_max'] = max(counts['nfe_max'], int(r.nfe.max()))
                counts['nfe_min'] = min(counts['nfe_min'], int(r.nfe.min()))
                counts['steps_max'] = max(counts['steps_max'], int(steps.max()))
                counts['steps_min'] = min(counts['steps_min'], int(steps.min()))
            counts['clipped'] += int(np.count_nonzero((r.rows < low) | (r.rows > 1.0)))
            counts['values'] += r.rows.size
            if moments is not None and len(r.rows):
                moments.update(r.rows)
            if on_round is not None:
                on_round(r)
            rbar.update(1)
    if own:
        bar.close()
    seconds = time.perf_counter() - t0
    counts = _counts_over_processes(counts)
    # the loop ran as long as the slowest example of the round on any process
    loop_iterations = int(distributed.gather(np.asarray(loop_steps, np.int64)).max(axis=0).sum()
                          ) if loop_steps else 0
    rows = num_rows(num_samples, batch_size, todo)
    nfe_max = counts['nfe_max']
    nfe = nfe_max if counts['nfe_min'] == nfe_max else counts['nfe_sum'] / max(rows, 1)
    steps_max = counts['steps_max']
    iterations = (steps_max if counts['steps_min'] == steps_max
                  else counts['steps_sum'] / max(rows, 1))
    clipped = counts['clipped'] / max(counts['values'], 1)
    if clipped > CLIP_WARNING and main:
        logging.warning('%.1f%% of the sample values lie outside the data range [%g, 1] and are '
                        'clipped in the uint8 images: the sampler may have diverged (%s)',
                        100 * clipped, low, describe_sampler(exp, solver, config))
    return RunResult(nfe, nfe_max, iterations, compile_s, seconds, num_samples,
                     _sum_over_processes(moments), clipped, steps_max, loop_iterations)


def describe_sampler(exp: Experiment, solver: Solver, config) -> str:
    """The sampler settings on one line, for messages."""
    summary = sampler_summary(config, exp, solver)
    return ', '.join(f'{k}={v}' for k, v in sorted(summary.items()))


def check_finite_round(k: int, index: np.ndarray, nonfinite_at: np.ndarray, exp: Experiment,
                       solver: Solver, config) -> None:
    """RunError naming round k, the first example and iteration whose state became
    non-finite (over every process; a collective in multi-process jobs). For a solver in the
    while loop (``max_steps``) a NaN at its last allowed attempt is an example that did not
    finish (:func:`pds.sampling.adaptive.fail_unfinished`): the error names
    ``sampling.adaptive.max_steps``."""
    bad = nonfinite_at >= 0
    first = (np.array([nonfinite_at[bad].min(), index[bad][np.argmin(nonfinite_at[bad])]])
             if bad.any() else np.array([-1, -1]))
    every = distributed.gather(first.astype(np.int64))
    hit = every[every[:, 0] >= 0]
    if not len(hit):
        return
    it, example = hit[np.argmin(hit[:, 0])]
    sampler = describe_sampler(exp, solver, config)
    limit = loop_length(solver, exp.grid)
    if takes_own_steps(solver) and it == limit - 1:
        raise RunError(f'unfinished samples in round {k}: example {example} had not reached '
                       f'the end time after sampling.adaptive.max_steps={limit} attempted '
                       'steps (raise it, or loosen the tolerance); nothing of this round was '
                       f'written (sampler: {sampler})')
    raise RunError(f'non-finite samples in round {k}: example {example} became NaN or '
                   f'infinite at iteration {it} of {limit}; nothing of this '
                   f'round was written (sampler: {sampler})')


def num_rows(num_samples: int, batch_size: int, rounds: Collection[int]) -> int:
    return sum(min(batch_size, num_samples - k * batch_size) for k in rounds)


def _counts_over_processes(counts: dict[str, int]) -> dict[str, int]:
    if jax.process_count() == 1:
        return counts
    parts = distributed.gather({k: np.int64(v) for k, v in counts.items()})
    out = {k: int(v.sum()) for k, v in parts.items()}
    for name in ('nfe', 'steps'):
        out[f'{name}_max'] = int(parts[f'{name}_max'].max())
        out[f'{name}_min'] = int(parts[f'{name}_min'].min())
    return out


def nfe_fields(nfe: np.ndarray) -> dict:
    """Report fields of per-example NFE counts: 'nfe' (an int when every example used the
    same, else the mean) and, when they differ, 'nfe_max'."""
    nfe = np.asarray(nfe)
    if nfe.min() == nfe.max():
        return {'nfe': int(nfe.max())}
    return {'nfe': float(nfe.mean()), 'nfe_max': int(nfe.max())}


@dataclasses.dataclass
class CompiledSampler:
    """A sampler compiled for one (SDE, grid, score model, shape, batch, solver) and its
    iteration bar; any variables of the same shapes run on it."""

    sampler: Sampler
    bar: IterationBar
    compile_seconds: float


def compile_sampler(exp: Experiment, solver: Solver, config, batch_size: int, mesh,
                    desc: str = 'sampling') -> CompiledSampler:
    every = int(config.sampling.progress_every)  # < 0: no bar, no host callback in the loop
    bar = IterationBar(loop_length(solver, exp.grid), desc,
                       enabled=distributed.is_main() and every >= 0)
    sampler = build_sampler(exp.sde, exp.grid, exp.score_builder, exp.image_shape, batch_size,
                            mesh, solver, progress=bar if every >= 0 else None,
                            progress_every=every,
                            prior_mean=exp.prior_mean, prior_spectrum=exp.prior_spectrum)
    shapes = lambda tree: jax.tree_util.tree_map(  # compiled from shapes: nothing is copied
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated(mesh)), tree)
    seconds = sampler.compile(shapes(exp.variables), shapes(exp.precond))
    return CompiledSampler(sampler, bar, seconds)


def _sum_over_processes(m: FourierMoments | None) -> FourierMoments | None:
    if m is None or jax.process_count() == 1:
        return m
    parts = distributed.gather({'n': np.int64(m.n), 's1': m.s1, 's2': m.s2})
    return FourierMoments(m.mean, int(parts['n'].sum()), parts['s1'].sum(axis=0),
                          parts['s2'].sum(axis=0))


def load_samples(workdir: str, key: str = 'samples') -> tuple[np.ndarray, np.ndarray]:
    """(global indices, arrays ``key``) of a sample run's files, in global order; a
    ValueError if indices repeat or leave gaps, a ConfigError (a ValueError naming
    ``--workdir`` and the file) if a file is unreadable or damaged."""
    index, rows = [], []
    for path in sorted(glob.glob(os.path.join(workdir, 'samples', 'samples_*.npz'))):
        part_index, part_rows = readers.read_sample_file(path, key)
        index.append(part_index)
        rows.append(part_rows)
    if not index:
        raise ValueError(f'no sample files in {workdir}/samples')
    index, rows = np.concatenate(index), np.concatenate(rows)
    order = np.argsort(index, kind='stable')
    index, rows = index[order], rows[order]
    if not np.array_equal(index, np.arange(len(index))):
        raise ValueError(f'{workdir}/samples: example indices repeat or leave gaps')
    return index, rows


def sampler_summary(config, exp: Experiment, solver: Solver) -> dict:
    """The solver's settings, the SDE, the grid (its N: ``iterations``, but not for a solver
    that takes its own steps, whose summary holds its ``max_steps``) and the preconditioner."""
    s = config.sampling
    out = solver.summary()
    out.update(sde=type(exp.sde).__name__, iterations=exp.grid.num_steps, eps=exp.grid.eps,
               precondition=s.precondition)
    if takes_own_steps(solver):
        del out['iterations']
    if s.precondition == 'pds':
        out['pds'] = {k: s.pds[k] for k in ('alpha', 'freq_mask', 'space_mask', 'transform',
                                            'predictor_form')}
        if s.pds.get('tuned', ''):
            out['pds']['tuned'] = s.pds.tuned  # the alpha above is the table's for this N
    return out
