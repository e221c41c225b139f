"""``--mode=sample``: draw ``eval.num_samples`` samples in rounds of ``eval.batch_size``.

Writes ``samples/samples_<k>.npz`` per round (key ``samples``: uint8 NHWC; with
``sampling.save_raw`` also ``raw``: float32 in data space), ``samples/grid.png`` and, last,
``metrics.json`` (its presence marks a complete run).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Collection

import jax
import numpy as np

from evaluation.gaussian_fd import FourierMoments, noise_floor
from pds import outputs
from pds.errors import ConfigError
from pds.experiment import Experiment, experiment_from_config
from pds.progress import IterationBar, round_bar
from pds.sampling import SamplerSpec, build_sampler, spec_from_config, to_uint8
from pds.sharding import data_mesh, replicate


@dataclasses.dataclass
class RunResult:
    nfe: int
    iterations: int
    compile_seconds: float
    sampling_seconds: float
    num_samples: int
    moments: FourierMoments | None


def count_rounds(num_samples, batch_size) -> int:
    for field, v in (('eval.num_samples', num_samples), ('eval.batch_size', batch_size)):
        if not isinstance(v, int) or v < 1:
            raise ConfigError(field, v, 'an integer >= 1')
    return math.ceil(num_samples / batch_size)


def sample_rounds(exp: Experiment, spec: SamplerSpec, config, num_samples: int,
                  batch_size: int, on_round=None, desc: str = 'sampling',
                  only: Collection[int] | None = None) -> RunResult:
    """Sample ``num_samples`` in rounds; ``on_round(k, x)`` gets each round's float32 samples.
    Round k covers global example indices [k B, (k + 1) B), so samples do not depend on the
    device count, and a round can be drawn on its own: ``only`` (default: all) names the
    rounds to draw (resuming runs skip the rest). Streams: only one round is in host memory
    at a time."""
    todo = [k for k in range(count_rounds(num_samples, batch_size))
            if only is None or k in only]
    mesh = data_mesh()
    bar = IterationBar(exp.grid.num_steps, desc, enabled=jax.process_index() == 0)
    sampler = build_sampler(exp.sde, exp.grid, exp.score_builder, exp.image_shape, batch_size,
                            mesh, spec, progress=bar,
                            progress_every=int(config.sampling.progress_every))
    variables = replicate(exp.variables, mesh)
    precond = replicate(exp.precond, mesh)
    compile_s = sampler.compile(variables, precond)
    moments = FourierMoments(np.asarray(exp.field.mean)) if exp.field is not None else None
    t0 = time.perf_counter()
    with round_bar(len(todo), desc, enabled=jax.process_index() == 0) as rbar:
        for k in todo:
            bar.reset()
            x = np.asarray(sampler(variables, precond, config.seed, k * batch_size))
            x = x[: min(batch_size, num_samples - k * batch_size)]
            if moments is not None:
                moments.update(x)
            if on_round is not None:
                on_round(k, x)
            rbar.update(1)
    bar.close()
    return RunResult(sampler.nfe, exp.grid.num_steps, compile_s, time.perf_counter() - t0,
                     num_samples, moments)


def sampler_summary(config, exp: Experiment, spec: SamplerSpec) -> dict:
    s = config.sampling
    out = dataclasses.asdict(spec)
    out.update(sde=type(exp.sde).__name__, iterations=exp.grid.num_steps, eps=exp.grid.eps,
               precondition=s.precondition)
    if s.precondition == 'pds':
        out['pds'] = {k: s.pds[k] for k in ('alpha', 'freq_mask', 'space_mask', 'transform')}
    return out


def run(config, workdir: str, overwrite: bool = False) -> dict:
    outputs.prepare_workdir(workdir)
    exp = experiment_from_config(config, workdir)
    spec = spec_from_config(config, exp.sde)
    num, batch = config.eval.num_samples, config.eval.batch_size
    rounds = count_rounds(num, batch)
    sample_dir = os.path.join(workdir, 'samples')
    metrics_path = os.path.join(workdir, 'metrics.json')
    round_paths = [os.path.join(sample_dir, f'samples_{k}.npz') for k in range(rounds)]
    grid_path = os.path.join(sample_dir, 'grid.png')
    outputs.claim_outputs([metrics_path, grid_path, *round_paths], overwrite)
    if overwrite and os.path.exists(metrics_path):
        os.remove(metrics_path)  # the old marker goes first: a crash leaves no complete look
    shown: list[np.ndarray] = []

    def on_round(k, x):
        images = to_uint8(x, config.data.centered)
        arrays = {'samples': images}
        if config.sampling.save_raw:
            arrays['raw'] = x.astype(np.float32)
        outputs.write_npz(round_paths[k], **arrays)
        if sum(len(s) for s in shown) < 64:
            shown.append(images)

    res = sample_rounds(exp, spec, config, num, batch, on_round)
    outputs.write_png(grid_path, outputs.image_grid(np.concatenate(shown)))
    metrics = {
        'nfe': res.nfe, 'iterations': res.iterations, 'num_samples': num,
        'batch_size': batch, 'rounds': rounds, 'devices': jax.device_count(),
        'compile_seconds': round(res.compile_seconds, 3),
        'sampling_seconds': round(res.sampling_seconds, 3),
        'seconds_per_iteration': round(res.sampling_seconds / (rounds * res.iterations), 6),
        'sampler': sampler_summary(config, exp, spec), 'seed': config.seed,
    }
    if res.moments is not None:
        h, w, _ = exp.image_shape
        fd = res.moments.frechet_distance(exp.field.spectrum(h, w))
        floor, floor_std = noise_floor(exp.field, num, h, w, seed=config.seed + 1)
        metrics.update(frechet_distance=fd, noise_floor=floor, noise_floor_std=floor_std)
    outputs.write_json(metrics_path, metrics)
    return metrics
