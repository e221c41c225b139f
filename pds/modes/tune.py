"""``--mode=tune``: PDS's alpha chosen per iteration count.

The objective is the bench's quality estimate (:mod:`pds.quality.estimates`) of the configured
sampler (``sampling.*``: predictor, corrector, snr, PDS masks and predictor form) with PDS at
alpha: the population Frechet distance by exact moments where they apply (an exact field's
score, a Fourier-diagonal preconditioner; seconds per cell), else the sampled unbiased FD of
``tune.num_samples`` samples (a trained network on Gaussian-field data, the mixture). For
each N of ``tune.steps``:

1. the baseline (no preconditioner) and every alpha of the grid ``tune.alphas``;
2. population estimate only: a golden-section search on log alpha between the grid
   neighbours of the best grid point, ``tune.refine`` more evaluations (FD(log alpha) is
   unimodal near its minimum on every field measured; the search keeps the best point seen,
   so it never returns worse than the grid);
3. alpha*(N): the alpha of the smallest FD, or null when the baseline beats every alpha.

With the sampled estimate there is no refinement (noise would steer it), and the minimum of
noisy estimates is biased low (the winner's curse): the report gives each cell's standard
error, and a pick within 2 SE of the runner-up is marked as not resolved.

On real data (a network trained on a dataset that is not an exact target) every cell is
sampled, and the objective is ``tune.metric`` against held-out images
(:class:`pds.quality.data_bench.DataObjective`: 'fd' the Fourier-mode FD to the data moments,
or 'swd'), the floor being the metric's data floor.

The fit log alpha* = a + b log N (least squares over the finite alpha*) summarises the
table; the journal version of PDS (arXiv 2302.06504) states a relation between alpha and the
iteration count that we could not read here (no network), so the fit is ours, not theirs.

Process 0 writes ``tune/alpha.json`` (the table ``sampling.pds.tuned`` reads,
:mod:`pds.method.tuned_alpha`), ``tune/tune.csv`` (every cell), ``tune/tune.md`` and
``tune/tune.png`` (FD against alpha per N; alpha*(N) with the fit; FD against NFE of the
baseline, the config's fixed alpha and the tuned alpha, with the 50k-sample floor).
"""

from __future__ import annotations

import copy
import os

import numpy as np

from pds.analytic.targets import check_known_distribution, experiment_target
from pds.experiment.rounds import count_rounds
from pds.quality import estimates, figures
from pds.quality.alpha_search import Objective, Settings, order, power_law_fit, tune_one
from pds.quality.data_bench import DataObjective
from pds.quality.estimates import floor_50k
from pds.quality.report import nfe_to_target, number
from pds.runtime import distributed
from pds.runtime.errors import ConfigError
from pds.storage import outputs, replace

FILES = ('alpha.json', 'tune.csv', 'tune.md', 'tune.png')
METRIC_NAMES = {'fd': 'Frechet distance', 'swd': 'SWD x 1e3'}


def settings_from_config(config) -> Settings:
    """``tune.*`` validated (one ConfigError line per bad field)."""
    t = config.tune
    steps = tuple(t.steps)
    if not steps or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in steps):
        raise ConfigError('tune.steps', steps, 'a non-empty list of integers >= 1')
    if len(set(steps)) != len(steps):
        raise ConfigError('tune.steps', steps, 'distinct iteration counts')
    alphas = tuple(t.alphas)
    if len(alphas) < 2 or any(isinstance(a, bool) or not isinstance(a, int | float)
                              or not 1 < a < 1e12 for a in alphas):
        raise ConfigError('tune.alphas', alphas, 'at least two numbers in (1, 1e12)')
    if isinstance(t.refine, bool) or not isinstance(t.refine, int) or not 0 <= t.refine <= 100:
        raise ConfigError('tune.refine', t.refine, 'an integer in [0, 100]')
    if t.estimate not in estimates.ESTIMATES:
        raise ConfigError('tune.estimate', t.estimate, ', '.join(estimates.ESTIMATES))
    return Settings(tuple(sorted(steps)), tuple(sorted(float(a) for a in alphas)),
                    int(t.refine), t.estimate, t.num_samples, t.batch_size)


def estimate_of(config, settings: Settings) -> str:
    cfg = copy.deepcopy(config)
    cfg.bench.estimate = settings.estimate
    return estimates.choose_estimate(cfg)


def run(config, workdir: str, overwrite: bool = False) -> dict:
    outputs.prepare_workdir(workdir)
    real_data = experiment_target(config) is None
    if not real_data:
        check_known_distribution(config, '--mode=tune')
    if config.sampling.method != 'pc':
        raise ConfigError('sampling.method', config.sampling.method,
                          "'pc' for --mode=tune (PDS's alpha belongs to the predictor-corrector "
                          'sampler; ODE solvers take no preconditioner)')
    settings = settings_from_config(config)
    estimate = 'sampled' if real_data else estimate_of(config, settings)
    if estimate == 'sampled':
        count_rounds(settings.num_samples, settings.batch_size)
    tune_dir = os.path.join(workdir, 'tune')
    paths = {name: os.path.join(tune_dir, name) for name in FILES}
    replace.check_not_interrupted(workdir)
    replace.claim(list(paths.values()), overwrite)

    say = print if distributed.is_main() else (lambda *a, **k: None)
    if real_data:  # held-out images: the metric's data floor
        objective = DataObjective(config, workdir, settings.num_samples, settings.batch_size)
        floor, metric = objective.floor_value, objective.metric
        floor_text = f'data floor of the {metric.upper()} (reference B)'
    else:
        objective = Objective(config, workdir, estimate, settings)
        floor, metric = floor_50k(objective.experiments.base), 'fd'
        floor_text = 'expected FD of 50,000 exact samples'
    say(f'{estimate} estimate; {floor_text}: {floor:.4g}', flush=True)
    table = []
    for n in settings.steps:
        row = tune_one(objective, n, settings)
        table.append(row)
        alpha = 'none (baseline)' if row['alpha'] is None else f'{row["alpha"]:.4g}'
        say(f'{n:5d} it  alpha* {alpha:>16}  FD {row["frechet_distance"]:10.4g}  baseline '
            f'{row["baseline_frechet_distance"]:10.4g}', flush=True)
    fixed = float(config.sampling.pds.alpha)
    fixed_rows = {n: objective(n, fixed) for n in settings.steps}
    report = {'steps': list(settings.steps), 'alpha': [r['alpha'] for r in table],
              'table': table, 'fit': power_law_fit(table), 'estimate': estimate,
              'floor_50k': floor, 'floor_text': floor_text, 'metric': metric,
              'fixed_alpha': fixed,
              'fixed_alpha_frechet_distance': [fixed_rows[n] for n in settings.steps],
              'sampler': sampler_settings(config)}
    if distributed.is_main():
        cells = [r for _, r in sorted(objective.rows.items(), key=order)]
        with replace.replacing(workdir, list(paths.values()), overwrite, tag=None):
            outputs.write_text(paths['tune.csv'], estimates.to_csv(cells, floor))
            outputs.write_text(paths['tune.md'], to_markdown(report))
            plot(paths['tune.png'], report, cells, config)
            outputs.write_json(paths['alpha.json'], report)  # last: the table the sampler reads
    return report


def sampler_settings(config) -> dict:
    """What the table is valid for: the sampler and schedule it was tuned on."""
    from pds.method import tuned_tables

    return tuned_tables.sampler_settings(config)


def to_markdown(report: dict) -> str:
    sampled = report['estimate'] == 'sampled'
    pm = (lambda v, se: f'{number(v)} +- {number(se)}') if sampled else (lambda v, se: number(v))
    name = METRIC_NAMES[report.get('metric', 'fd')]
    lines = [f"alpha* per iteration count ({report['estimate']} {name}; "
             f"{report.get('floor_text', 'expected FD of 50,000 exact samples')} "
             f"{report['floor_50k']:.3g}). FD below: this {name}. Gain: baseline / tuned.", '',
             f"| iterations | NFE | alpha* | tuned FD | baseline FD | gain | FD at alpha "
             f"{report['fixed_alpha']:g} |", '|---:|---:|---:|---:|---:|---:|---:|']
    for r, fixed in zip(report['table'], report['fixed_alpha_frechet_distance']):
        alpha = 'none' if r['alpha'] is None else f"{r['alpha']:.3g}"
        if not r['resolved']:
            alpha += ' (within 2 SE)'
        gain = r['baseline_frechet_distance'] / max(r['frechet_distance'], 1e-300)
        lines.append(f"| {r['iterations']} | {r['nfe']} | {alpha} | "
                     f"{pm(r['frechet_distance'], r['frechet_distance_se'])} | "
                     f"{pm(r['baseline_frechet_distance'], r['baseline_frechet_distance_se'])}"
                     f" | {gain:.3g}x | {number(fixed)} |")
    fit = report['fit']
    lines.append('')
    if fit is None:
        lines.append('No power-law fit (fewer than two finite alpha*).')
    else:
        lines.append(f"Fit: alpha* = {fit['coefficient']:.3g} N^{fit['exponent']:.3f} "
                     f"(rms log residual {fit['rms_log_residual']:.3f}, {fit['points']} points).")
    curves = [{'method': name, 'nfe': r['nfe'], 'frechet_distance': r[key]}
              for name, key in (('tuned', 'frechet_distance'),
                                ('baseline', 'baseline_frechet_distance'))
              for r in report['table']]
    reach = nfe_to_target(curves, report['floor_50k'], 'method', margin_se=0.0)
    lines.append(f"NFE to the floor on this ladder: tuned {reach['tuned'] or '-'}, "
                 f"baseline {reach['baseline'] or '-'}.")
    return '\n'.join(lines) + '\n'


def plot(path: str, report: dict, cells: list[dict], config) -> None:
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15.0, 4.4), dpi=110)
    ax = axes[0]
    cmap = plt.get_cmap('viridis')
    steps = report['steps']
    for j, n in enumerate(steps):
        color = cmap(j / max(1, len(steps) - 1))
        pts = sorted((r['alpha'], r['frechet_distance']) for r in cells
                     if r['iterations'] == n and r['alpha'] is not None)
        a, f = zip(*pts)
        ax.plot(a, np.maximum(f, 1e-6), '.-', color=color, ms=3, lw=1, label=f'N={n}')
        base = next(r['frechet_distance'] for r in cells
                if r['iterations'] == n and r['alpha'] is None)
        ax.axhline(max(base, 1e-6), color=color, lw=0.8, ls=':')
    top = 30.0 * max(r['baseline_frechet_distance'] for r in report['table'])
    ax.set(xscale='log', yscale='log', xlabel='alpha', ylabel='Frechet distance',
           title='FD against alpha (dotted: baseline; clipped above)', ylim=(None, top))
    ax.legend(fontsize=6, ncol=2)

    ax = axes[1]
    pts = [(r['iterations'], r['alpha']) for r in report['table'] if r['alpha'] is not None]
    if pts:
        ax.plot(*zip(*pts), 'o', label='alpha*(N)')
    fit = report['fit']
    if fit is not None:
        n = np.geomspace(min(steps), max(steps), 50)
        ax.plot(n, fit['coefficient'] * n ** fit['exponent'], '-',
                label=f"{fit['coefficient']:.3g} N^{fit['exponent']:.2f}")
    ax.set(xscale='log', yscale='log', xlabel='iterations N', ylabel='alpha*',
           title='tuned alpha (baseline-best N not shown)')
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)

    ax = axes[2]
    nfe = [r['nfe'] for r in report['table']]
    ax.plot(nfe, [max(r['baseline_frechet_distance'], 1e-6) for r in report['table']], 's-',
            label='baseline')
    ax.plot(nfe, np.maximum(report['fixed_alpha_frechet_distance'], 1e-6), '^-',
            label=f"PDS alpha={report['fixed_alpha']:g}")
    ax.plot(nfe, [max(r['frechet_distance'], 1e-6) for r in report['table']], 'o-',
            label='PDS tuned alpha')
    ax.axhline(report['floor_50k'], color='k', lw=1, ls=':',
               label=report.get('floor_text', '50k-sample floor'))
    ax.set(xscale='log', yscale='log', xlabel='NFE', ylabel='Frechet distance',
           title=f"{config.data.dataset} {config.data.image_size}px, {report['estimate']}")
    ax.legend(fontsize=7)
    for a in axes:
        a.grid(True, which='both', alpha=0.3)
    fig.tight_layout()
    figures.save(fig, path)

