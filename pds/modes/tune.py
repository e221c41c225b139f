"""``--mode=tune``: PDS's alpha chosen per iteration count.

The objective is the bench's quality estimate (:mod:`pds.modes.bench`) of the configured
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
import dataclasses
import math
import os

import numpy as np

from pds.analytic.fd import expected_floor
from pds.modes import bench, plotting
from pds.modes.bench import Experiments, Method
from pds.modes.sample import count_rounds
from pds.runtime import distributed
from pds.runtime.errors import ConfigError
from pds.storage import outputs, replace

FILES = ('alpha.json', 'tune.csv', 'tune.md', 'tune.png')
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...


@dataclasses.dataclass(frozen=True)
class Settings:
    steps: tuple[int, ...]
    alphas: tuple[float, ...]
    refine: int
    estimate: str
    num_samples: int
    batch_size: int


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
    if t.estimate not in bench.ESTIMATES:
        raise ConfigError('tune.estimate', t.estimate, ', '.join(bench.ESTIMATES))
    return Settings(tuple(sorted(steps)), tuple(sorted(float(a) for a in alphas)),
                    int(t.refine), t.estimate, t.num_samples, t.batch_size)


def estimate_of(config, settings: Settings) -> str:
    cfg = copy.deepcopy(config)
    cfg.bench.estimate = settings.estimate
    return bench.choose_estimate(cfg)


class Objective:
    """FD of (N, alpha) cells, each computed once (alpha None: the baseline)."""

    def __init__(self, config, workdir: str, estimate: str, settings: Settings):
        self.config, self.estimate, self.settings = config, estimate, settings
        self.form = config.sampling.pds.get('predictor_form', 'reference')
        self.experiments = Experiments(config, workdir)
        self.rows: dict[tuple[int, float | None], dict] = {}

    def __call__(self, n: int, alpha: float | None) -> float:
        key = (n, alpha)
        if key not in self.rows:
            method = Method(alpha, self.form)
            if self.estimate == 'population':
                row = bench.population_cell(self.config, self.experiments, method, n)
            else:
                row = bench.sampled_cell(self.config, self.experiments, method, n,
                                         self.settings.num_samples, self.settings.batch_size)
            self.rows[key] = row
        return float(self.rows[key]['frechet_distance'])

    def cells(self, n: int) -> list[dict]:
        return [r for (m, _), r in sorted(self.rows.items(), key=_order) if m == n]


def _order(item) -> tuple[int, float]:
    (n, alpha), _ = item
    return n, -1.0 if alpha is None else alpha


def golden_section(f, lo: float, hi: float, evaluations: int) -> None:
    """Minimise f over log alpha in [lo, hi] with ``evaluations`` calls (f records them)."""
    a, b = math.log(lo), math.log(hi)
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = f(math.exp(c)), f(math.exp(d))
    for _ in range(max(0, evaluations - 2)):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = f(math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = f(math.exp(d))


def tune_one(objective: Objective, n: int, settings: Settings) -> dict:
    """alpha*(N) and the cells behind it (module docstring, steps 1-3)."""
    grid = settings.alphas
    fds = [objective(n, a) for a in grid]
    base = objective(n, None)
    i = int(np.argmin(fds))
    if objective.estimate == 'population' and settings.refine >= 2:
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        golden_section(lambda a: objective(n, a), lo, hi, settings.refine)
    tried = {a: r for (m, a), r in objective.rows.items() if m == n and a is not None}
    best = min(tried, key=lambda a: tried[a]['frechet_distance'])
    best_fd = tried[best]['frechet_distance']
    out = {'iterations': n, 'nfe': tried[best]['nfe'], 'alpha': best,
           'frechet_distance': best_fd, 'frechet_distance_se': tried[best]['frechet_distance_se'],
           'baseline_frechet_distance': base,
           'baseline_frechet_distance_se': objective.rows[(n, None)]['frechet_distance_se'],
           'resolved': True}
    if base <= best_fd:
        out.update(alpha=None, frechet_distance=base,
                   frechet_distance_se=out['baseline_frechet_distance_se'])
    if objective.estimate == 'sampled':
        cells = sorted([(r['frechet_distance'], r['frechet_distance_se'])
                        for r in objective.cells(n)])
        (f0, s0), (f1, s1) = cells[0], cells[1]
        out['resolved'] = bool(f1 - f0 > 2.0 * math.hypot(s0, s1))
    return out


def power_law_fit(table: list[dict]) -> dict | None:
    """log alpha* = a + b log N over the finite alpha* (None with fewer than two)."""
    pts = [(math.log(r['iterations']), math.log(r['alpha'])) for r in table
           if r['alpha'] is not None]
    if len(pts) < 2 or len({p[0] for p in pts}) < 2:
        return None
    x, y = (np.asarray(v) for v in zip(*pts))
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    return {'log_a': float(a), 'exponent': float(b), 'coefficient': float(math.exp(a)),
            'rms_log_residual': float(np.sqrt(np.mean(resid**2))), 'points': len(pts)}


def run(config, workdir: str, overwrite: bool = False) -> dict:
    outputs.prepare_workdir(workdir)
    bench.check_known_distribution(config, '--mode=tune')
    if config.sampling.method != 'pc':
        raise ConfigError('sampling.method', config.sampling.method,
                          "'pc' for --mode=tune (PDS's alpha belongs to the predictor-corrector "
                          'sampler; ODE solvers take no preconditioner)')
    settings = settings_from_config(config)
    estimate = estimate_of(config, settings)
    if estimate == 'sampled':
        count_rounds(settings.num_samples, settings.batch_size)
    tune_dir = os.path.join(workdir, 'tune')
    paths = {name: os.path.join(tune_dir, name) for name in FILES}
    replace.check_not_interrupted(workdir)
    replace.claim(list(paths.values()), overwrite)

    say = print if distributed.is_main() else (lambda *a, **k: None)
    objective = Objective(config, workdir, estimate, settings)
    floor = expected_floor(bench.target_moments(objective.experiments.base)[1])
    say(f'{estimate} estimate; expected FD of 50,000 exact samples: {floor:.4g}', flush=True)
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
              'floor_50k': floor, 'fixed_alpha': fixed,
              'fixed_alpha_frechet_distance': [fixed_rows[n] for n in settings.steps],
              'sampler': sampler_settings(config)}
    if distributed.is_main():
        cells = [r for _, r in sorted(objective.rows.items(), key=_order)]
        with replace.replacing(workdir, list(paths.values()), overwrite, tag=None):
            outputs.write_text(paths['tune.csv'], bench.to_csv(cells, floor))
            outputs.write_text(paths['tune.md'], to_markdown(report))
            plot(paths['tune.png'], report, cells, config)
            outputs.write_json(paths['alpha.json'], report)  # last: the table the sampler reads
    return report


def sampler_settings(config) -> dict:
    """What the table is valid for: the sampler and schedule it was tuned on."""
    from pds.method import tuned_tables

    return tuned_tables.sampler_settings(config)


def _fmt(v: float) -> str:
    return f'{v:.1f}' if abs(v) >= 100 else f'{v:.3g}'


def to_markdown(report: dict) -> str:
    sampled = report['estimate'] == 'sampled'
    pm = (lambda v, se: f'{_fmt(v)} +- {_fmt(se)}') if sampled else (lambda v, se: _fmt(v))
    lines = [f"alpha* per iteration count ({report['estimate']} Frechet distance; expected FD "
             f"of 50,000 exact samples {report['floor_50k']:.3g}). Gain: baseline FD / tuned "
             'FD.', '',
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
                     f" | {gain:.3g}x | {_fmt(fixed)} |")
    fit = report['fit']
    lines.append('')
    if fit is None:
        lines.append('No power-law fit (fewer than two finite alpha*).')
    else:
        lines.append(f"Fit: alpha* = {fit['coefficient']:.3g} N^{fit['exponent']:.3f} "
                     f"(rms log residual {fit['rms_log_residual']:.3f}, {fit['points']} points).")
    floor = report['floor_50k']
    reach = [r['nfe'] for r in report['table'] if r['frechet_distance'] <= floor]
    base = [r['nfe'] for r in report['table'] if r['baseline_frechet_distance'] <= floor]
    lines.append(f"NFE to the 50k floor on this ladder: tuned {min(reach) if reach else '-'}, "
                 f"baseline {min(base) if base else '-'}.")
    return '\n'.join(lines) + '\n'


def plot(path: str, report: dict, cells: list[dict], config) -> None:
    plt = plotting.pyplot()
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
    ax.legend(fontsize=7)

    ax = axes[2]
    nfe = [r['nfe'] for r in report['table']]
    ax.plot(nfe, [max(r['baseline_frechet_distance'], 1e-6) for r in report['table']], 's-',
            label='baseline')
    ax.plot(nfe, np.maximum(report['fixed_alpha_frechet_distance'], 1e-6), '^-',
            label=f"PDS alpha={report['fixed_alpha']:g}")
    ax.plot(nfe, [max(r['frechet_distance'], 1e-6) for r in report['table']], 'o-',
            label='PDS tuned alpha')
    ax.axhline(report['floor_50k'], color='k', lw=1, ls=':', label='50k-sample floor')
    ax.set(xscale='log', yscale='log', xlabel='NFE', ylabel='Frechet distance',
           title=f"{config.data.dataset} {config.data.image_size}px, {report['estimate']}")
    ax.legend(fontsize=7)
    for a in axes:
        a.grid(True, which='both', alpha=0.3)
    fig.tight_layout()
    plotting.save(fig, path)

