"""PDS cost at 1024 x 1024 (configs/analytic/ffhq_1024.py), measured as ratios in one run.

1. Sampler: seconds per iteration with and without PDS (exact Gaussian-field score).
2. Preconditioner alone: our rfft2 path (pds.method.precondition) against a direct port of the
   reference's complex formulation (four complex FFTs for the drift, two for the noise),
   with the frequency mask alone and with frequency and space masks.

    python benchmarks/precondition_ffhq1024.py [--batch 2] [--repeats 5]

Writes benchmarks/results/precondition_ffhq1024.json.
"""

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs.analytic import ffhq_1024
from pds.method.precondition import (
    apply_drift,
    apply_noise,
    drift_complex,
    make_preconditioner,
    noise_complex,
)
from pds.modes.experiment import experiment_from_config, pds_gains
from pds.runtime.mesh import data_mesh, replicate
from pds.sampling.sampler import build_sampler, spec_from_config


def best_of(fn, repeats: int) -> float:
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.min(times))


def sampler_seconds_per_iteration(batch: int, iterations: int, repeats: int) -> dict:
    out = {}
    for method in ('none', 'pds'):
        config = ffhq_1024.get_config()
        config.sampling.steps = iterations
        config.sampling.precondition = method
        config.sampling.pds.num_stat_images = 16
        exp = experiment_from_config(config)
        mesh = data_mesh()
        s = build_sampler(exp.sde, exp.grid, exp.score_builder, exp.image_shape, batch, mesh,
                          spec_from_config(config, exp.sde))
        v, p = replicate(exp.variables, mesh), replicate(exp.precond, mesh)
        s.compile(v, p)
        out[method] = best_of(lambda s=s, v=v, p=p: s(v, p, 0), repeats) / iterations
    out['pds_over_baseline'] = out['pds'] / out['none']
    return out


def preconditioner_seconds(batch: int, repeats: int) -> dict:
    config = ffhq_1024.get_config()
    config.sampling.pds.num_stat_images = 16
    g = jax.random.normal(jax.random.key(0), (batch, 1024, 1024, 3))
    results = {}
    for masks in ('freq', 'freq+space'):
        config.sampling.pds.space_mask = 'stats' if masks == 'freq+space' else ''
        r, d = pds_gains(config)
        p = make_preconditioner(r, d)
        ours = jax.jit(lambda g, p=p: (apply_drift(p, g), apply_noise(p, g)))
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
    args = parser.parse_args()
    result = {
        'device': str(jax.devices()[0].device_kind), 'platform': platform.platform(),
        'jax': jax.__version__, 'batch': args.batch,
        'sampler_seconds_per_iteration': sampler_seconds_per_iteration(
            args.batch, args.iterations, args.repeats),
        'preconditioner': preconditioner_seconds(args.batch, args.repeats),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
