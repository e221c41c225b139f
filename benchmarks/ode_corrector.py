"""A Langevin corrector after each ODE step (``sampling.ode_corrector``), with and without
PDS, against the plain ODE solver at equal NFE on the exact 16x16 Gaussian field.

Solvers, with the mean prior (x_T = alpha(T) mu + prior noise): EDM Heun on Karras' grid and
DPM-Solver++(2M) on the log-SNR grid. At each NFE budget (counting the corrector's
evaluations) each solver runs with the largest step count that fits: plain, with one
Langevin step (``sampling.snr`` of the config, 0.16) after every step but the last, and with
that corrector preconditioned by PDS (M in the corrector only) at the config's alpha and at
another alpha; and, outside the budget, with the corrector at the plain row's step count
(``langevin_same_n``: what the corrector does to the same ODE steps, at more NFE). The
corrector's step size is a batch statistic, so the output is not an affine map of x_T: the FD
is sampled (unbiased estimate, 0 in expectation for exact samples, with its delta-method
standard error). Every cell draws the same x_T (one seed), so differences between cells are
less noisy than their SEs suggest. The plain rows also give the exact population FD
(``pds.analytic.moments``) beside the sampled one.

    PYTHONPATH=. python benchmarks/ode_corrector.py [--config configs/analytic/field_16.py]
        [--samples 1024] [--out benchmarks/results/ode_corrector_field16.json] [--smoke]

Writes the JSON (one row per solver, budget and corrector) and a markdown table (.md).
"""

from __future__ import annotations

import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.smoke import sampled_field_main

OUT = 'benchmarks/results/ode_corrector_field16.json'
SOLVERS = {'edm_heun': 'karras', 'dpm_solver_2m': 'logsnr'}  # method -> grid
BUDGETS = (20, 40, 100)  # total NFE per example, the corrector's included
EXTRA_ALPHAS = (2.0,)  # PDS alphas besides the config's (gains in [1, alpha / (alpha - 1)])


def nfe_of(method: str, steps: int, corrector_steps: int) -> int:
    """Score evaluations of ``steps`` steps: Heun 2 N - 1, 2M N; the corrector adds
    ``corrector_steps`` after every step but the last."""
    ode = 2 * steps - 1 if method == 'edm_heun' else steps
    return ode + corrector_steps * (steps - 1)


def steps_for(method: str, budget: int, corrector_steps: int) -> int:
    """The largest step count whose NFE fits the budget (at least 2)."""
    n = 2
    while nfe_of(method, n + 1, corrector_steps) <= budget:
        n += 1
    return n


def variants(config) -> list[tuple[str, str, float | None]]:
    """(label, ode_corrector, PDS alpha or None) of each cell at a budget."""
    alpha = float(config.sampling.pds.alpha)
    alphas = [alpha, *(a for a in EXTRA_ALPHAS if a != alpha)]
    return [('none', 'none', None), ('langevin', 'langevin', None),
            ('langevin_same_n', 'langevin', None),
            *((f'langevin_pds_a{a:g}', 'langevin', a) for a in alphas)]


def cell_config(config, method: str, steps: int, corrector: str, alpha: float | None):
    cfg = copy.deepcopy(config)
    s = cfg.sampling
    s.method, s.grid, s.steps, s.prior = method, SOLVERS[method], steps, 'mean'
    s.ode_corrector, s.n_steps_each = corrector, 1
    s.precondition = 'none' if alpha is None else 'pds'
    s.pds.tuned = ''
    if alpha is not None:
        s.pds.alpha = alpha
    return cfg


def run(config, samples: int, batch: int, smoke: bool = False) -> dict:
    from pds.analytic.moments import population_moments
    from pds.quality.estimates import Experiments, sampled_fields

    experiments = Experiments(config)
    rows = []
    budgets = BUDGETS[:1] if smoke else BUDGETS
    cells = variants(config)[:4] if smoke else variants(config)
    for method in SOLVERS:
        for budget in budgets:
            for label, corrector, alpha in cells:
                plain = label in ('none', 'langevin_same_n')  # the plain row's step count
                steps = steps_for(method, budget, 0 if plain else 1)
                cfg = cell_config(config, method, steps, corrector, alpha)
                exp = experiments.for_config(cfg)
                t0 = time.perf_counter()
                fields = sampled_fields(cfg, exp, samples, batch, f'{method} {label}')
                row = {'solver': method, 'grid': SOLVERS[method], 'budget': budget,
                       'corrector': label, 'alpha': alpha, 'steps': steps,
                       'nfe': fields['nfe'], 'frechet_distance': fields['frechet_distance'],
                       'frechet_distance_se': fields['frechet_distance_se'],
                       **{k: v for k, v in fields.items() if k.startswith('variance_ratio')},
                       'seconds': round(time.perf_counter() - t0, 2)}
                assert row['nfe'] == nfe_of(method, steps, 0 if corrector == 'none' else 1)
                if corrector == 'none':
                    row['population_fd'] = population_moments(cfg, exp).frechet_distance
                rows.append(row)
                pop = (f"  (population {row['population_fd']:.4f})" if 'population_fd' in row
                       else '')
                print(f"{method:>14} budget {budget:4d} {label:>18} N={steps:3d} NFE "
                      f"{row['nfe']:4d}  FD {row['frechet_distance']:+.4f} +- "
                      f"{row['frechet_distance_se']:.4f}{pop}", flush=True)
    return {'image_size': config.data.image_size, 'samples': samples, 'snr': config.sampling.snr,
            'rows': rows, 'smoke': smoke}


def markdown(result: dict) -> str:
    n, size = result['samples'], result['image_size']
    lines = [f'Sampled unbiased FD of {n} samples on the {size}x{size} field (0 for exact '
             f"samples) +- its standard error, mean prior; one Langevin step (snr "
             f"{result['snr']:g}) after each ODE step but the last, counted in the NFE; "
             'population FD (exact) of the plain rows.', '',
             '| solver | budget | corrector | N | NFE | FD | SE | population FD | '
             'var. ratio low / mid / high |',
             '|---|---:|---|---:|---:|---:|---:|---:|---|']
    for r in result['rows']:
        pop = f"{r['population_fd']:.4f}" if 'population_fd' in r else ''
        ratios = ' / '.join(f"{r.get(f'variance_ratio_{b}', float('nan')):.3f}"
                            for b in ('low', 'mid', 'high'))
        lines.append(f"| {r['solver']} | {r['budget']} | {r['corrector']} | {r['steps']} | "
                     f"{r['nfe']} | {r['frechet_distance']:+.4f} | "
                     f"{r['frechet_distance_se']:.4f} | {pop} | {ratios} |")
    return '\n'.join(lines) + '\n'


def main() -> None:
    sampled_field_main(__doc__, OUT, run, markdown)


if __name__ == '__main__':
    main()
