"""ODE samplers against the predictor-corrector baseline on an exact Gaussian field, by exact
population moments: quality against NFE, and the NFE each needs to reach the 50k-sample floor.

Samplers (each with score_sde's prior, mean 0, and the mean prior x_T = alpha(T) mu + prior):
probability-flow Euler on the ladder, EDM's Heun on Karras' rho-7 grid, DPM-Solver++(2M) on
the log-SNR uniform grid (also with the Gaussian prior), DPM-Solver++(3M) and DDIM with the mean
prior, EDM's stochastic sampler (churn S_churn 0, 10, 40, 80 on the noise levels 0.05-50,
EDM's ImageNet-64 range, S_noise 1) with the mean prior and at S_churn 40 with score_sde's;
and the reference PC sampler (reverse diffusion + Langevin, no
preconditioner) with the score_sde prior. With the exact score and no preconditioner every
ODE solver is affine per Fourier mode, so its population moments are exact
(``pds.analytic.moments.deterministic_moments``); EDM's churn adds fresh noise to each step,
which stays affine per mode, so its moments propagate step by step
(``pds.analytic.moments.stepwise_moments``); the PC rows come from the same propagation as
``--mode=bench``.

    PYTHONPATH=. python benchmarks/ode_samplers.py [--config configs/analytic/ffhq_256.py]
        [--out benchmarks/results/ode_samplers_ffhq256.json] [--smoke]

Writes the JSON (rows, the floor, NFE to the floor per sampler) and a markdown table (.md).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.smoke import add_smoke_flag, load_config, smoke_setup, write_report

OUT = 'benchmarks/results/ode_samplers_ffhq256.json'
# label -> (sampling.method, sampling.grid, prior, step counts[, sampling.edm overrides])
ODE_STEPS = (5, 10, 18, 25, 35, 50, 70, 100, 140, 200)
SAMPLERS = {
    'pc_baseline': ('pc', 'ladder', 'score_sde', (20, 40, 66, 100, 200, 500, 1000, 2000)),
    'pf_euler': ('pf_euler', 'ladder', 'score_sde', (10, 35, 100, 200, 500, 1000)),
    'pf_euler_mean': ('pf_euler', 'ladder', 'mean', (10, 35, 100, 200, 500, 1000)),
    'edm_heun': ('edm_heun', 'karras', 'score_sde', ODE_STEPS),
    'edm_heun_mean': ('edm_heun', 'karras', 'mean', ODE_STEPS),
    'dpm_solver_2m': ('dpm_solver_2m', 'logsnr', 'score_sde', ODE_STEPS),
    'dpm_solver_2m_mean': ('dpm_solver_2m', 'logsnr', 'mean', ODE_STEPS),
    'dpm_solver_2m_gaussian': ('dpm_solver_2m', 'logsnr', 'gaussian', ODE_STEPS),
    'dpm_solver_3m_mean': ('dpm_solver_3m', 'logsnr', 'mean', ODE_STEPS),
    'ddim_mean': ('ddim', 'logsnr', 'mean', ODE_STEPS),
    **{f'edm_stochastic_churn{c}_mean': ('edm_stochastic', 'karras', 'mean', ODE_STEPS, {
        's_churn': float(c), 's_tmin': 0.05, 's_tmax': 50.0, 's_noise': 1.0})
       for c in (0, 10, 40, 80)},
    'edm_stochastic_churn40': ('edm_stochastic', 'karras', 'score_sde', ODE_STEPS, {
        's_churn': 40.0, 's_tmin': 0.05, 's_tmax': 50.0, 's_noise': 1.0}),
}


def run(config, smoke: bool = False) -> dict:
    from pds.analytic.fd import expected_floor
    from pds.analytic.moments import population_moments
    from pds.experiment.assemble import experiment_from_config
    from pds.quality.report import nfe_to_target

    rows = []
    base = copy.deepcopy(config)
    base.sampling.precondition = 'none'
    for label, (method, grid, prior, steps, *edm) in SAMPLERS.items():
        for n in (steps[:2] if smoke else steps):
            cfg = copy.deepcopy(base)
            cfg.sampling.method, cfg.sampling.grid, cfg.sampling.prior = method, grid, prior
            cfg.sampling.edm.update(*edm)
            cfg.sampling.steps = n
            t0 = time.perf_counter()
            exp = experiment_from_config(cfg)
            pop = population_moments(cfg, exp)
            rows.append({'method': label, 'solver': method, 'grid': grid, 'prior': prior,
                         **({'s_churn': edm[0]['s_churn']} if edm else {}),
                         'iterations': n, 'nfe': pop.nfe,
                         'frechet_distance': pop.frechet_distance,
                         'mean_error_sq': pop.mean_error_sq,
                         'seconds': round(time.perf_counter() - t0, 3)})
            print(f'{label:>20} {n:5d} it  NFE {pop.nfe:5d}  FD {pop.frechet_distance:10.4g}'
                  f'  (mean part {pop.mean_error_sq:.4g})', flush=True)
    h = config.data.image_size
    floor = expected_floor(experiment_from_config(base).field.spectrum(h, h))
    return {'image_size': h, 'floor_50k': floor, 'rows': rows,
            'nfe_to_floor': nfe_to_target(rows, floor, 'method', margin_se=0.0), 'smoke': smoke}


def markdown(result: dict) -> str:
    lines = [f"Population FD on the {result['image_size']}x{result['image_size']} field "
             f"(50k-sample floor {result['floor_50k']:.3g}); NFE, then FD.", '',
             '| sampler | grid | prior | NFE: FD ... | NFE to floor |', '|---|---|---|---|---:|']
    for label in dict.fromkeys(r['method'] for r in result['rows']):
        mine = [r for r in result['rows'] if r['method'] == label]
        cells = ', '.join(f"{r['nfe']}: {r['frechet_distance']:.3g}" for r in mine)
        reach = result['nfe_to_floor'][label]
        churn = f" S_churn {mine[0]['s_churn']:g}" if 's_churn' in mine[0] else ''
        lines.append(f"| {mine[0]['solver']}{churn} | {mine[0]['grid']} | {mine[0]['prior']} | "
                     f"{cells} | {'-' if reach is None else reach} |")
    return '\n'.join(lines) + '\n'


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default='configs/analytic/ffhq_256.py')
    p.add_argument('--out', default=OUT)
    add_smoke_flag(p)
    args = p.parse_args()
    if args.smoke:
        smoke_setup()
    config = load_config(args.config)
    if args.smoke:
        config.data.image_size = 16
    result = run(config, args.smoke)
    result['config'] = args.config
    write_report(args.out, result, markdown(result))


if __name__ == '__main__':
    main()
