"""The sampler comparison of ``--mode=bench`` (``bench.samplers`` set): quality against NFE for
every sampler of the project on one config; its presets, ladders, report and plot.

Each name in ``bench.samplers`` is a preset (:func:`presets`, derived from the solvers'
declarations): the sampler's config fields (method, grid, prior, preconditioner) and its
score evaluations for N steps, NFE(N) = a N + b as the solver declares it.
A fixed-step sampler runs at each budget of ``bench.nfe`` with the largest N whose NFE fits,
N = (budget - b) // a (the row reports the NFE the loop counted); an adaptive one at each
tolerance of ``bench.rtols`` (dopri5: rtol = atol) or ``bench.eps_rels`` (adaptive_sde) and
reports its mean and largest NFE per example.

The estimate per cell is the bench's: the population FD by exact moments where they apply
(an exact field's score; every fixed-step solver; the PC sampler with a Fourier-diagonal
preconditioner), else the sampled unbiased FD +- its standard error of ``bench.num_samples``
samples (networks, the mixture, the adaptive solvers). ``bench.estimate='sampled'`` samples
every cell.

The headline per sampler is the smallest NFE on its ladder whose FD is at or below the
target: the expected FD of 50,000 exact samples (``fd.expected_floor``), or
``bench.target_fd`` when set (> 0). A sampled FD counts when FD + 2 SE is under the target.

Presets: every registered solver under its ``sampling.method`` name, on the grid it declares;
every solver but the reference sampler starts from ``bench.ode_prior`` ('mean' removes the
offset a deterministic flow carries from the reference prior's zero mean). ``pc_pds`` and
``pc_pds_tuned`` are the reference sampler of the config (predictor, corrector, snr) with PDS
at ``sampling.pds.alpha`` and with the alpha table of ``sampling.pds.tuned`` (``--mode=tune``;
only at the iteration counts the table covers).

``--mode=bench`` (:mod:`pds.modes.bench`) writes ``bench/samplers.csv``, ``bench/samplers.md``
and ``bench/samplers.png`` (:data:`FILES`) from process 0.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io

import numpy as np

from pds.analytic.fd import BANDS
from pds.analytic.moments import check_config
from pds.experiment.assemble import apply_tuned_alpha
from pds.method import tuned_alpha
from pds.quality import figures
from pds.quality.report import nfe_to_target, number
from pds.runtime.errors import ConfigError, check_choice
from pds.sampling.declaration import SolverSpec
from pds.sampling.solver import solver_specs

FILES = ('samplers.csv', 'samplers.md', 'samplers.png')
ODE_PRIORS = ('score_sde', 'mean')


@dataclasses.dataclass(frozen=True)
class Preset:
    """A sampler of the bench: a solver's declaration and the config fields the bench sets."""

    spec: SolverSpec
    fields: dict
    tuned: bool = False  # alpha from the sampling.pds.tuned table, at the counts it covers

    @property
    def tolerance(self) -> str:
        """adaptive: the sampling.adaptive field the bench sweeps ('' for fixed steps)."""
        return self.spec.tolerance

    @property
    def ode_prior(self) -> bool:
        """It starts from ``bench.ode_prior`` without M (every solver but the reference)."""
        return self.spec.bench_prior == 'ode_prior'


def presets() -> dict[str, Preset]:
    """One preset per registered solver (its declared grid; a solver whose declared
    ``bench_prior`` is 'ode_prior' starts from ``bench.ode_prior`` without a preconditioner),
    plus ``<name>_pds`` (M at ``sampling.pds.alpha``) and ``<name>_pds_tuned`` (the alpha
    table of ``sampling.pds.tuned``) where the declaration's ``bench_pds`` lists them."""
    out = {}
    for spec in solver_specs():
        fields = {'method': spec.name, 'grid': spec.grid}
        out[spec.name] = Preset(spec, fields | {'precondition': 'none'})
        for suffix in spec.bench_pds:
            out[f'{spec.name}_{suffix}'] = Preset(spec, fields | {'precondition': 'pds'},
                                                  tuned=suffix == 'pds_tuned')
    return out


def _numbers(field: str, values, low: float, high: float, integer: bool = False) -> list:
    vals = list(values)
    ok = bool(vals) and all(
        not isinstance(v, bool) and isinstance(v, int if integer else int | float)
        and low <= v <= high for v in vals)
    if not ok:
        kind = 'integers' if integer else 'numbers'
        raise ConfigError(field, tuple(vals), f'a non-empty list of {kind} in [{low:g}, {high:g}]')
    return vals


def settings(config) -> tuple[list[str], list[int], list[float], list[float]]:
    """(sampler names, NFE budgets, dopri5 rtols, adaptive_sde eps_rels), validated."""
    b = config.bench
    names = list(b.samplers)
    for name in names:
        check_choice('bench.samplers', name, tuple(presets()))
    if len(set(names)) != len(names):
        raise ConfigError('bench.samplers', tuple(names), 'distinct sampler names')
    tuned = [name for name in names if presets()[name].tuned]
    if tuned and not config.sampling.pds.get('tuned', ''):
        raise ConfigError('sampling.pds.tuned', '', 'a tune/alpha.json from --mode=tune with '
                          f'bench.samplers containing {tuned[0]!r}')
    check_choice('bench.ode_prior', b.ode_prior, ODE_PRIORS)
    if not isinstance(b.target_fd, int | float) or b.target_fd < 0:
        raise ConfigError('bench.target_fd', b.target_fd, 'a number >= 0 (0: the 50k floor)')
    budgets = sorted(_numbers('bench.nfe', b.nfe, 1, 10**6, integer=True))
    rtols = _numbers('bench.rtols', b.rtols, 1e-12, 1.0)
    eps_rels = _numbers('bench.eps_rels', b.eps_rels, 1e-6, 1.0)
    return names, budgets, rtols, eps_rels


def cell_configs(config, name: str, budgets: list[int], rtols: list[float],
                 eps_rels: list[float]) -> list[tuple[str, object]]:
    """(ladder label, config) per rung of one sampler: a budget's N, or a tolerance."""
    preset = presets()[name]
    base = copy.deepcopy(config)
    s = base.sampling
    for key, value in preset.fields.items():
        s[key] = value
    if not preset.tuned:
        s.pds.tuned = ''
    if preset.ode_prior:
        s.prior = config.bench.ode_prior
    if preset.tolerance:
        out = []
        for tol in (rtols if preset.tolerance == 'rtol' else eps_rels):
            cfg = copy.deepcopy(base)
            s2 = cfg.sampling.adaptive
            s2[preset.tolerance] = float(tol)
            if preset.tolerance == 'rtol':
                s2.atol = float(tol)
            out.append((f'{preset.tolerance}={tol:g}', cfg))
        return out
    low, high = 1, 10**9
    if preset.tuned:  # only the iteration counts the table covers
        steps = tuned_alpha.read_table(s.pds.tuned)[0]
        low, high = steps[0], steps[-1]
    out = []
    for budget in budgets:
        n = preset.spec.steps_within(s, budget)
        if not low <= n <= high:
            continue
        cfg = copy.deepcopy(base)
        cfg.sampling.steps = int(n)
        out.append((f'N={n}', apply_tuned_alpha(cfg)))
    if not out:
        raise ConfigError('bench.samplers', name, 'samplers with at least one budget of '
                          f'bench.nfe={tuple(budgets)} that gives them an iteration count in '
                          f'[{low}, {high}] ({name} has none: raise bench.nfe or drop it)')
    return out


def estimate_for(config, cfg, name: str) -> str:
    if config.bench.estimate == 'sampled' or presets()[name].tolerance:
        return 'sampled'
    try:
        check_config(cfg)
    except ConfigError:
        if config.bench.estimate == 'population':
            raise
        return 'sampled'
    return 'population'


COLUMNS = ('sampler', 'rung', 'nfe', 'nfe_max', 'estimate', 'frechet_distance',
           'frechet_distance_se', 'frechet_distance_plugin',
           *(f'variance_ratio_{b}' for b in BANDS), 'seconds')


def to_csv(rows: list[dict], floor: float, target: float) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*COLUMNS, 'floor_50k', 'target_fd'])
    writer.writeheader()
    for r in rows:
        writer.writerow({**{k: r.get(k, '') for k in COLUMNS}, 'floor_50k': floor,
                         'target_fd': target})
    return buf.getvalue()


def to_markdown(rows: list[dict], floor: float, target: float, config) -> str:
    names = list(dict.fromkeys(r['sampler'] for r in rows))
    reach = nfe_to_target(rows, target, 'sampler', margin_se=2.0)
    what = ('the 50k-sample floor' if target == floor else 'bench.target_fd')
    lines = [f'Samplers on {config.data.dataset} {config.data.image_size}x'
             f'{config.data.image_size} ({config.model.name} score). Frechet distance to the '
             f'data distribution: population (exact moments) or sampled (unbiased, +- 1 SE, '
             f'{config.bench.num_samples} samples). Target {target:.3g} ({what}); expected FD '
             f'of 50,000 exact samples {floor:.3g}.', '',
             '| sampler | NFE to target | ladder: NFE -> FD |', '|---|---:|---|']
    for name in names:
        cells = []
        for r in (r for r in rows if r['sampler'] == name):
            nfe = (f"{r['nfe']:.4g}" if r['nfe'] == r['nfe_max']
                   else f"{r['nfe']:.4g} (max {r['nfe_max']})")
            fd = number(r['frechet_distance'])
            if r['estimate'] == 'sampled':
                fd += f" +- {number(r['frechet_distance_se'])}"
            cells.append(f'{nfe} -> {fd}')
        hit = reach[name]
        lines.append(f"| {name} | {'-' if hit is None else f'{hit:.4g}'} | "
                     + '; '.join(cells) + ' |')
    lines += ['', 'Band variance ratios (output / target; low / mid / high thirds of |k|) at '
              "each sampler's largest NFE:", '']
    for name in names:
        last = max((r for r in rows if r['sampler'] == name), key=lambda r: r['nfe'])
        lines.append(f'- {name} ({last["rung"]}): ' + ' / '.join(
            f"{last[f'variance_ratio_{b}']:.3f}" for b in BANDS))
    return '\n'.join(lines) + '\n'


def plot(path: str, rows: list[dict], floor: float, target: float, config) -> None:
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(7.6, 5.0), dpi=120)
    names = list(dict.fromkeys(r['sampler'] for r in rows))
    for i, name in enumerate(names):
        nfe, fd, se = figures.fd_curve(rows, 'sampler', name)
        preset = presets()[name]
        style = ':' if preset.tolerance else ('--' if preset.ode_prior else '-')
        line, = ax.plot(nfe, np.maximum(fd, 1e-6), style, marker='os^vD<>ph*X'[i % 11], ms=4,
                        label=name)
        if np.any(se > 0):
            ax.errorbar(nfe, np.maximum(fd, 1e-6), yerr=se, fmt='none',
                        ecolor=line.get_color(), capsize=2, lw=0.8)
    ax.axhline(floor, color='k', lw=1, ls=':', label='expected FD of 50k exact samples')
    if target != floor:
        ax.axhline(target, color='r', lw=1, ls='--', label='bench.target_fd')
    ax.set(xscale='log', yscale='log', xlabel='NFE (score evaluations per sample)',
           ylabel='Frechet distance to the data distribution')
    size = config.data.image_size
    ax.set_title(f'{config.data.dataset} {size}x{size}, {config.model.name} score; lower is '
                 'better (dotted: adaptive, +- 1 SE where sampled)', fontsize=8)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    figures.save(fig, path)

