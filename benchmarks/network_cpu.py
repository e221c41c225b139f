"""Per-NFE time of NCSN++ on this machine's CPU, with and without PDS, in one run.

Configs: ve/cifar10_ncsnpp_continuous (32 x 32) and ve/ffhq_256_ncsnpp_continuous (256 x 256),
batch 1 and 8 (random weights, reverse diffusion + Langevin). The PDS overhead is measured
twice: the full PDS sampler against the baseline, and the preconditioner's own work per
iteration (two drifts and two noises, frequency + space masks) against the baseline iteration.

    python benchmarks/network_cpu.py [--cases cifar10:1,cifar10:8,ffhq_256:1,ffhq_256:8]

Writes benchmarks/results/network_cpu.json (or ``--out``; updated after every case).
``--smoke``: the case cifar10:1 with an 8 x 8 one-resolution network, 1 iteration, 1 repeat.
"""

import argparse
import json
import os
import time

import jax
import numpy as np

from benchmarks.gpu_check import random_pds, timed
from benchmarks.smoke import add_smoke_flag, apply_smoke_size, tiny_network, write_json
from configs.ve import cifar10_ncsnpp_continuous, ffhq_256_ncsnpp_continuous
from pds.experiment.assemble import experiment_from_config
from pds.method.precondition import Identity
from pds.runtime.mesh import data_mesh, replicate
from pds.sampling.sampler import build_sampler
from pds.sampling.solver import solver_from_config

CONFIGS = {'cifar10': cifar10_ncsnpp_continuous, 'ffhq_256': ffhq_256_ncsnpp_continuous}
ALL_CASES = 'cifar10:1,cifar10:8,ffhq_256:1,ffhq_256:8'
SMOKE_CASES = 'cifar10:1'


def run_case(name: str, batch: int, iterations: int, repeats: int, smoke: bool = False) -> dict:
    config = CONFIGS[name].get_config()
    config.sampling.steps = iterations
    if smoke:
        tiny_network(config)
    exp = experiment_from_config(config)
    mesh = data_mesh()
    v = replicate(exp.variables, mesh)
    solver = solver_from_config(config, exp.sde)
    pds = random_pds(exp.image_shape)
    out = {'config': name, 'batch': batch, 'iterations': iterations,
           'image_size': exp.image_shape[0]}
    runs, nfe = {}, {}
    for label, precond in (('baseline', Identity()), ('pds', pds)):
        s = build_sampler(exp.sde, exp.grid, exp.score_builder, exp.image_shape, batch, mesh,
                          solver)
        p = replicate(precond, mesh)
        out[f'{label}_compile_seconds'] = s.compile(v, p)
        nfe[label] = float(np.mean(s.run(v, p, 0)[1]))  # warm-up; score evaluations per sample
        runs[label] = (s, p)
    # interleave the two samplers so that load from elsewhere hits both alike; keep the best
    best = dict.fromkeys(runs, float('inf'))
    for _ in range(repeats):
        for label, (s, p) in runs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(s(v, p, 0))
            best[label] = min(best[label], time.perf_counter() - t0)
    for label in runs:
        out[f'{label}_nfe'] = nfe[label]
        out[f'{label}_seconds_per_nfe'] = best[label] / nfe[label]
    g = jax.random.normal(jax.random.key(1), (batch, *exp.image_shape))
    ops = jax.jit(lambda g, p: (p.drift(g), p.noise(g), p.drift(g), p.noise(g)))
    per_iteration = out['baseline_seconds_per_nfe'] * nfe['baseline'] / iterations
    out['pds_ops_seconds_per_iteration'] = timed(lambda: ops(g, pds), repeats)
    out['pds_ops_fraction_of_iteration'] = out['pds_ops_seconds_per_iteration'] / per_iteration
    out['pds_sampler_over_baseline'] = (out['pds_seconds_per_nfe']
                                        / out['baseline_seconds_per_nfe'])
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--cases', default=ALL_CASES)
    parser.add_argument('--iterations', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'results',
                                                      'network_cpu.json'))
    add_smoke_flag(parser)
    args = parser.parse_args()
    apply_smoke_size(args, ALL_CASES, SMOKE_CASES)
    result = {'device': jax.devices()[0].device_kind, 'jax': jax.__version__,
              'cpu_count': os.cpu_count(), 'cases': []}
    for case in args.cases.split(','):
        name, batch = case.split(':')
        t0 = time.perf_counter()
        res = run_case(name, int(batch), args.iterations, args.repeats, args.smoke)
        res['wall_seconds'] = time.perf_counter() - t0
        result['cases'].append(res)
        print(json.dumps(res), flush=True)
        write_json(args.out, result)


if __name__ == '__main__':
    main()
