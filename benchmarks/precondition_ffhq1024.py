"""PDS cost at 1024 x 1024 (configs/analytic/ffhq_1024.py), measured as ratios in one run.

1. Sampler: seconds per iteration with and without PDS (exact Gaussian-field score).
2. Preconditioner alone: our rfft2 path (pds.method.pds_preconditioner) against a direct port
   of the reference's complex formulation (four complex FFTs for the drift, two for the
   noise), with the frequency mask alone and with frequency and space masks.

    python benchmarks/precondition_ffhq1024.py [--batch 2] [--repeats 5] [--smoke --out F]

Writes benchmarks/results/precondition_ffhq1024.json (or ``--out``). ``--smoke``: 16 x 16
images, batch 1, 2 iterations, 1 repeat, on the CPU.
"""

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.smoke import add_smoke_flag, smoke_setup, write_json
from configs.analytic import ffhq_1024
from pds.experiment.assemble import experiment_from_config, image_shape, stats_images
from pds.method.pds_preconditioner import (
    drift_complex,
    make_preconditioner,
    noise_complex,
    pds_gains,
)
from pds.runtime.mesh import data_mesh, replicate
from pds.sampling.sampler import build_sampler
from pds.sampling.solver import solver_from_config

SMOKE_IMAGE_SIZE = 16


def best_of(fn, repeats: int) -> float:
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.min(times))


def get_config(image_size: int | None = None, num_stat_images: int = 16):
    config = ffhq_1024.get_config()
    config.sampling.pds.num_stat_images = num_stat_images
    if image_size is not None:
        config.data.image_size = image_size
    return config


def sampler_seconds_per_iteration(batch: int, iterations: int, repeats: int,
                                  image_size: int | None = None) -> dict:
    out = {}
    for method in ('none', 'pds'):
        config = get_config(image_size)
        config.sampling.steps = iterations
        config.sampling.precondition = method
        exp = experiment_from_config(config)
        mesh = data_mesh()
        s = build_sampler(exp.sde, exp.grid, exp.score_builder, exp.image_shape, batch, mesh,
                          solver_from_config(config, exp.sde))
        v, p = replicate(exp.variables, mesh), replicate(exp.precond, mesh)
        s.compile(v, p)
        out[method] = best_of(lambda s=s, v=v, p=p: s(v, p, 0), repeats) / iterations
    out['pds_over_baseline'] = out['pds'] / out['none']
    return out


def preconditioner_seconds(batch: int, repeats: int, image_size: int | None = None) -> dict:
    config = get_config(image_size)
    shape = image_shape(config)
    g = jax.random.normal(jax.random.key(0), (batch, *shape))
    results = {}
    for masks in ('freq', 'freq+space'):
        config.sampling.pds.space_mask = 'stats' if masks == 'freq+space' else ''
        r, d = pds_gains(config, shape, lambda n: stats_images(config, n))
        p = make_preconditioner(r, d)
        ours = jax.jit(lambda g, p=p: (p.drift(g), p.noise(g)))
        ref = jax.jit(lambda g, r=r, d=d: (drift_complex(r, d, g), noise_complex(r, d, g)))
        a, b = ours(g), ref(g)
        err = max(float(jnp.max(jnp.abs(a[i] - b[i]))) for i in range(2))
        t_ours = best_of(lambda ours=ours: ours(g), repeats)
        t_ref = best_of(lambda ref=ref: ref(g), repeats)
        results[masks] = {'ours_seconds': t_ours, 'complex_seconds': t_ref,
                          'speedup': t_ref / t_ours, 'max_abs_difference': err}
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--iterations', type=int, default=6)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'results',
                                                      'precondition_ffhq1024.json'))
    add_smoke_flag(parser)
    args = parser.parse_args()
    size = None
    if args.smoke:
        smoke_setup()
        args.batch, args.iterations, args.repeats, size = 1, 2, 1, SMOKE_IMAGE_SIZE
    result = {
        'device': str(jax.devices()[0].device_kind), 'platform': platform.platform(),
        'jax': jax.__version__, 'batch': args.batch,
        'image_size': image_shape(get_config(size))[0], 'smoke': args.smoke,
        'sampler_seconds_per_iteration': sampler_seconds_per_iteration(
            args.batch, args.iterations, args.repeats, size),
        'preconditioner': preconditioner_seconds(args.batch, args.repeats, size),
    }
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
