"""The error-controlled solvers on the exact 16x16 Gaussian field: sampled unbiased FD (with
its standard error) and NFE per example (mean, max) against the tolerance.

Solvers, all with the mean prior (x_T = alpha(T) mu + prior noise) and the final denoising
step: ``dopri5`` (Dormand-Prince 5(4) on the probability-flow ODE) over rtol = atol, and
``adaptive_sde`` ("Gotta Go Fast", Euler-Maruyama / improved Euler on the reverse SDE) over
eps_rel (eps_abs one uint8 level, 1/255), plain and with PDS in the invariant form. The
adaptive steps make a solver's output a non-affine map of x_T, so the FD is sampled
(``pds.analytic.fd.FourierMoments.unbiased_frechet_distance``, 0 in expectation for exact
samples; its standard error by the delta method), not propagated exactly.

    PYTHONPATH=. python benchmarks/adaptive_solvers.py [--config configs/analytic/field_16.py]
        [--samples 1024] [--out benchmarks/results/adaptive_solvers_field16.json] [--smoke]

Writes the JSON (one row per solver and tolerance) and a markdown table (.md).
"""

from __future__ import annotations

import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.smoke import sampled_field_main

OUT = 'benchmarks/results/adaptive_solvers_field16.json'
# label -> (sampling.method, precondition, tolerance field of sampling.adaptive, tolerances)
SOLVERS = {
    'dopri5': ('dopri5', 'none', 'rtol', (1e-2, 1e-3, 1e-4, 1e-5)),
    'adaptive_sde': ('adaptive_sde', 'none', 'eps_rel', (0.9, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)),
    'adaptive_sde_pds': ('adaptive_sde', 'pds', 'eps_rel', (0.5, 0.1, 0.02)),
}


def cell_config(config, method: str, precondition: str, field: str, tol: float):
    cfg = copy.deepcopy(config)
    s = cfg.sampling
    s.method, s.precondition, s.prior = method, precondition, 'mean'
    s.pds.predictor_form = 'invariant'
    s.adaptive[field] = tol
    if field == 'rtol':
        s.adaptive.atol = tol
    return cfg


def run_cell(cfg, samples: int, batch: int) -> dict:
    from pds.experiment.assemble import experiment_from_config
    from pds.experiment.rounds import sample_rounds
    from pds.sampling.solver import solver_from_config

    exp = experiment_from_config(cfg)
    t0 = time.perf_counter()
    res = sample_rounds(exp, solver_from_config(cfg, exp.sde), cfg, samples, batch,
                        desc=cfg.sampling.method)
    h = exp.image_shape[0]
    spectrum = exp.field.spectrum(h, h)
    fd = res.moments.unbiased_frechet_distance(spectrum)
    se = res.moments.unbiased_fd_standard_error(spectrum)
    return {'nfe_mean': float(res.nfe), 'nfe_max': int(res.nfe_max),
            'frechet_distance_unbiased': fd, 'standard_error': se,
            'compile_seconds': round(res.compile_seconds, 3),
            'seconds': round(time.perf_counter() - t0, 3)}


def run(config, samples: int, batch: int, smoke: bool = False) -> dict:
    rows = []
    for label, (method, precondition, field, tols) in SOLVERS.items():
        for tol in (tols[:2] if smoke else tols):
            cfg = cell_config(config, method, precondition, field, tol)
            row = {'solver': label, 'tolerance_field': field, 'tolerance': tol,
                   **run_cell(cfg, samples, batch)}
            rows.append(row)
            print(f"{label:>17} {field}={tol:<7g} NFE {row['nfe_mean']:7.1f} (max "
                  f"{row['nfe_max']:4d})  FD {row['frechet_distance_unbiased']:+.4f} +- "
                  f"{row['standard_error']:.4f}", flush=True)
    return {'image_size': config.data.image_size, 'samples': samples, 'rows': rows,
            'smoke': smoke}


def markdown(result: dict) -> str:
    n, size = result['samples'], result['image_size']
    lines = [f'Sampled unbiased FD of {n} samples on the {size}x{size} field (0 for exact '
             'samples), with its standard error; NFE per example.', '',
             '| solver | tolerance | NFE mean | NFE max | FD | SE | FD / SE |',
             '|---|---|---:|---:|---:|---:|---:|']
    for r in result['rows']:
        fd, se = r['frechet_distance_unbiased'], r['standard_error']
        lines.append(f"| {r['solver']} | {r['tolerance_field']}={r['tolerance']:g} | "
                     f"{r['nfe_mean']:.1f} | {r['nfe_max']} | {fd:+.4f} | {se:.4f} | "
                     f"{fd / se:+.1f} |")
    return '\n'.join(lines) + '\n'


def main() -> None:
    sampled_field_main(__doc__, OUT, run, markdown)


if __name__ == '__main__':
    main()
