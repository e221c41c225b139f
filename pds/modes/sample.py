"""``--mode=sample``: draw ``eval.num_samples`` samples in rounds of ``eval.batch_size``.

Round k holds the examples with global indices [k B, (k + 1) B)
(:func:`pds.experiment.rounds.sample_rounds`). Each process writes the rows it holds as soon as
the round is done, so host memory holds one round whatever the run's size:

    samples/samples_<k>.npz            (one process)  ``samples``: uint8 NHWC, ``index``: the
    samples/samples_<k>_p<i>of<n>.npz  (process i)    rows' global example indices; with
                                                      ``sampling.save_raw`` also ``raw``
                                                      (float32 in data space)

then (process 0) ``samples/grid.png`` of the first 64 samples and, last, ``metrics.json``
(its presence marks a complete run: every process has written its files by then).
:func:`pds.experiment.rounds.load_samples` reads a run's samples back in global order, whatever
its process count.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from pds.analytic.fd import noise_floor
from pds.experiment.assemble import Experiment, experiment_from_config
from pds.experiment.rounds import Round, count_rounds, sample_rounds, sampler_summary
from pds.runtime import distributed
from pds.runtime.mesh import check_batch, data_mesh
from pds.sampling.sampler import to_uint8
from pds.sampling.solver import Solver, solver_from_config, takes_own_steps
from pds.storage import outputs, replace

GRID_IMAGES = 64


def run(config, workdir: str, overwrite: bool = False) -> dict:
    """Sample, write the files, return the metrics (process 0; {} elsewhere). Everything is
    built and checked before the outputs are claimed; with ``overwrite`` an earlier run's
    files are set aside and come back unchanged if this run fails (:mod:`pds.storage.replace`).
    """
    outputs.prepare_workdir(workdir)
    exp = experiment_from_config(config, workdir)
    solver = solver_from_config(config, exp.sde)
    count_rounds(config.eval.num_samples, config.eval.batch_size)
    check_batch('eval.batch_size', config.eval.batch_size, data_mesh())
    claimed = [os.path.join(workdir, 'metrics.json'), os.path.join(workdir, 'samples')]
    with replace.replacing(workdir, claimed, overwrite, 'sample'):
        return _sample_and_write(config, exp, solver, workdir)


def _sample_and_write(config, exp: Experiment, solver: Solver, workdir: str) -> dict:
    num, batch = config.eval.num_samples, config.eval.batch_size
    rounds = count_rounds(num, batch)
    sample_dir = os.path.join(workdir, 'samples')
    metrics_path = os.path.join(workdir, 'metrics.json')
    grid_path = os.path.join(sample_dir, 'grid.png')
    shown: list[np.ndarray] = []
    mixed: list[np.ndarray] = []  # the raw rows, for the mixture report

    def on_round(r: Round) -> None:
        if exp.mixture is not None:
            mixed.append(r.rows)
        arrays = {'samples': to_uint8(r.rows, config.data.centered), 'index': r.index}
        if config.sampling.save_raw:
            arrays['raw'] = r.rows.astype(np.float32)
        outputs.write_npz(os.path.join(sample_dir, distributed.process_file('samples', r.k)),
                          **arrays)
        want = min(GRID_IMAGES - sum(len(s) for s in shown), r.valid)
        if want > 0:  # every process takes part: the rows may live on several
            shown.append(to_uint8(distributed.first_rows(r.array, want), config.data.centered))

    res = sample_rounds(exp, solver, config, num, batch, on_round)
    distributed.barrier('sample:written')
    if exp.mixture is not None:  # every process takes part (a collective)
        mixed = distributed.gather_rows(np.concatenate(mixed))
    if not distributed.is_main():
        return {}
    outputs.write_png(grid_path, outputs.image_grid(np.concatenate(shown)))
    # iterations: steps per example (the grid's N; for a solver that takes its own steps the
    # mean of the steps each example attempted, with iterations_max and loop_iterations, the
    # compiled loop's iterations over all rounds); seconds_per_iteration: one step of the batch
    metrics = {
        'nfe': res.nfe, 'iterations': res.iterations, 'num_samples': num,
        'batch_size': batch, 'rounds': rounds, 'devices': jax.device_count(),
        'processes': jax.process_count(),
        'compile_seconds': round(res.compile_seconds, 3),
        'sampling_seconds': round(res.sampling_seconds, 3),
        'seconds_per_iteration': round(res.sampling_seconds / max(res.loop_iterations, 1), 6),
        'sampler': sampler_summary(config, exp, solver), 'seed': config.seed,
        'clipped_fraction': round(res.clipped_fraction, 6),
    }
    if takes_own_steps(solver):
        metrics.update(iterations_max=res.iterations_max, loop_iterations=res.loop_iterations)
    if exp.checkpoint is not None:
        metrics['checkpoint'] = exp.checkpoint
    if res.nfe != res.nfe_max:  # adaptive solvers: the mean above, the largest here
        metrics['nfe_max'] = res.nfe_max
    if res.moments is not None:
        h, w, _ = exp.image_shape
        # frechet_distance: the plug-in statistic (biased at small n), with noise_floor, its
        # value on as many exact samples; frechet_distance_unbiased estimates the population
        # FD, to be read against frechet_floor_50k (pds/analytic/fd.py)
        metrics.update(res.moments.summary(exp.field.spectrum(h, w)))
        floor, floor_std = noise_floor(exp.field, num, h, w, seed=config.seed + 1)
        metrics.update(noise_floor=floor, noise_floor_std=floor_std)
    if exp.mixture is not None:
        from pds.analytic.mixture import mixture_report

        metrics['mixture'] = mixture_report(mixed, exp.mixture, floor_draws=5, seed=config.seed + 1)
    outputs.write_json(metrics_path, metrics)
    return metrics
