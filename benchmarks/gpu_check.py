"""GPU check of the score networks with PDS: one command, results in one JSON file.

For the FFHQ-256 and FFHQ-1024 NCSN++ configs, in float32 and bfloat16, it measures the
compile time and the per-NFE time of the full compiled sampler (reverse diffusion + Langevin,
random weights), the peak device memory, and the PDS overhead: the preconditioner's cost per
iteration (two drifts M M^T g and two noises M z at the sampling batch) relative to the
baseline iteration, and for 256 float32 also the full PDS sampler against the baseline.

    PYTHONPATH=. python benchmarks/gpu_check.py --out benchmarks/results/gpu_check.json [--tiny]

Each case runs in its own process, so its peak device memory is its own.

``--tiny`` shrinks the networks (64 x 64 images). ``--smoke`` runs the same logic on the CPU
at toy size: one case (ffhq_256 float32, which also times the full PDS sampler) in its own
process, an 8 x 8 one-resolution network, 1 iteration, 1 repeat.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np

from benchmarks.smoke import add_smoke_flag, apply_smoke_size, tiny_network, write_json
from configs.ve import ffhq_256_ncsnpp_continuous, ffhq_ncsnpp_continuous
from pds.experiment.assemble import experiment_from_config
from pds.method import masks
from pds.method.pds_preconditioner import PDSPreconditioner, make_preconditioner
from pds.method.precondition import Identity
from pds.runtime.mesh import data_mesh, replicate
from pds.sampling.sampler import build_sampler
from pds.sampling.solver import solver_from_config

CASES = (('ffhq_256', ffhq_256_ncsnpp_continuous, 8), ('ffhq_1024', ffhq_ncsnpp_continuous, 2))
ALL_CASES = ','.join(f'{name}:{dtype}' for name, _, _ in CASES
                     for dtype in ('float32', 'bfloat16'))
SMOKE_CASES = 'ffhq_256:float32'


def timed(fn, repeats: int = 3) -> float:
    jax.block_until_ready(fn())
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return float(best)


def peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get('peak_bytes_in_use')


def random_pds(shape_hwc, seed=0) -> PDSPreconditioner:
    x = np.random.default_rng(seed).uniform(size=(16, *shape_hwc))
    return make_preconditioner(masks.frequency_gain(masks.frequency_statistic(x), 5.0),
                               masks.space_gain(masks.space_statistic(x), 5.0))


def run_case(name, module, batch, dtype, iterations, tiny, with_pds_sampler, smoke=False,
             repeats=3):
    config = module.get_config()
    config.model.dtype = dtype
    config.sampling.steps = iterations
    if smoke:
        tiny_network(config)
        batch = 1
    elif tiny:
        config.model.nf = 8
        config.data.image_size = 64
        config.model.ch_mult = (1, 2)
        config.model.attn_resolutions = (16,)
    exp = experiment_from_config(config)  # no workdir: random init (warning logged)
    mesh = data_mesh()
    v = replicate(exp.variables, mesh)
    solver = solver_from_config(config, exp.sde)
    out = {'config': name, 'dtype': dtype, 'batch': batch, 'image_size': exp.image_shape[0],
           'iterations': iterations}
    pds = random_pds(exp.image_shape)
    variants = [('baseline', Identity())] + ([('pds', pds)] if with_pds_sampler else [])
    for label, precond in variants:
        s = build_sampler(exp.sde, exp.grid, exp.score_builder, exp.image_shape, batch, mesh,
                          solver)
        p = replicate(precond, mesh)
        out[f'{label}_compile_seconds'] = s.compile(v, p)
        nfe = float(np.mean(s.run(v, p, 0)[1]))  # score evaluations per sample
        t = timed(lambda s=s, p=p: s(v, p, 0), repeats)
        out[f'{label}_nfe'] = nfe
        out[f'{label}_seconds_per_nfe'] = t / nfe
        out[f'{label}_seconds_per_iteration'] = t / iterations
    g = jax.random.normal(jax.random.key(1), (batch, *exp.image_shape))
    ops = jax.jit(lambda g, p: (p.drift(g), p.noise(g), p.drift(g), p.noise(g)))
    out['pds_ops_seconds_per_iteration'] = timed(lambda: ops(g, pds), repeats)
    out['pds_overhead_fraction'] = (out['pds_ops_seconds_per_iteration']
                                    / out['baseline_seconds_per_iteration'])
    if with_pds_sampler:
        out['pds_sampler_over_baseline'] = (out['pds_seconds_per_iteration']
                                            / out['baseline_seconds_per_iteration'])
    out['peak_bytes_in_use'] = peak_bytes()
    return out


def one_case(args) -> dict:
    name, dtype = args.case.split(':')
    module, batch = {n: (m, b) for n, m, b in CASES}[name]
    with_pds = name == 'ffhq_256' and dtype == 'float32'
    return run_case(name, module, batch, dtype, args.iterations, args.tiny, with_pds,
                    args.smoke, args.repeats)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--out', required=True)
    parser.add_argument('--iterations', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=3, help='timed calls (best of)')
    parser.add_argument('--tiny', action='store_true')
    parser.add_argument('--cases', default=ALL_CASES, help='name:dtype,...; one process each')
    parser.add_argument('--case', help='name:dtype; runs one case in this process')
    add_smoke_flag(parser)
    args = parser.parse_args()
    apply_smoke_size(args, ALL_CASES, SMOKE_CASES)
    if args.case:  # child: one case per process, so peak memory is this case's own
        print('RESULT ' + json.dumps(one_case(args)), flush=True)
        return
    result = {'device': jax.devices()[0].device_kind, 'jax': jax.__version__,
              'device_count': jax.device_count(), 'cases': []}
    t_start = time.perf_counter()
    for spec in args.cases.split(','):
        name, dtype = spec.split(':')
        cmd = [sys.executable, __file__, '--out', args.out, '--case', spec,
               '--iterations', str(args.iterations), '--repeats', str(args.repeats)]
        cmd += ['--tiny'] if args.tiny else []
        cmd += ['--smoke'] if args.smoke else []
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [root, *filter(None, [os.environ.get('PYTHONPATH')])]))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
        if lines:
            case = json.loads(lines[-1][len('RESULT '):])
        else:  # record and go on: one file holds whatever ran
            case = {'config': name, 'dtype': dtype, 'returncode': proc.returncode,
                    'error': proc.stderr[-2000:]}
        result['cases'].append(case)
        print(json.dumps(case), flush=True)
        result['wall_seconds'] = time.perf_counter() - t_start
        write_json(args.out, result)


if __name__ == '__main__':
    main()
