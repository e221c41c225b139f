"""``--mode=bench`` across samplers (``bench.samplers`` set): quality against NFE for every
sampler of the project on one config, one report and one plot.

Each name in ``bench.samplers`` is a preset (:data:`PRESETS`): the sampler's config fields
(method, grid, prior, preconditioner) and its score evaluations per step, NFE(N) = a N + b.
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

Presets (the ODE solvers and the adaptive ones start from ``bench.ode_prior``: 'mean' removes
the offset a deterministic flow carries from the reference prior's zero mean):

- ``pc``, ``pc_pds``, ``pc_pds_tuned``: the reference sampler of the config (predictor,
  corrector, snr) without PDS, with PDS at ``sampling.pds.alpha``, and with the alpha table of
  ``sampling.pds.tuned`` (``--mode=tune``; only at the iteration counts the table covers);
  ladder grid, score_sde prior;
- ``pf_euler`` (ladder), ``ddim``, ``dpm_solver_2m`` / ``dpm_solver_3m`` and ``unipc``
  (log-SNR),
  ``edm_heun`` and ``edm_stochastic`` (Karras, ``sampling.edm`` churn);
- ``dopri5``, ``adaptive_sde``: the error-controlled solvers.

Process 0 writes ``bench/samplers.csv``, ``bench/samplers.md`` and ``bench/samplers.png``.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import os

import numpy as np

from pds.analytic.fd import BANDS, expected_floor
from pds.analytic.moments import check_config
from pds.method import tuned_alpha
from pds.modes import bench, plotting
from pds.modes.experiment import apply_tuned_alpha
from pds.modes.sample import count_rounds
from pds.runtime import distributed
from pds.runtime.errors import ConfigError, check_choice
from pds.storage import outputs, replace

FILES = ('samplers.csv', 'samplers.md', 'samplers.png')
ODE_PRIORS = ('score_sde', 'mean')


@dataclasses.dataclass(frozen=True)
class Preset:
    """A sampler of the bench: its config fields and NFE(N) = per_step N + extra."""

    fields: dict
    per_step: int = 1
    extra: int = 0
    ode: bool = True  # starts from bench.ode_prior; no preconditioner
    tolerance: str = ''  # adaptive: the sampling.adaptive field the bench sweeps


PRESETS = {
    'pc': Preset({'method': 'pc', 'precondition': 'none', 'grid': 'ladder'}, ode=False),
    'pc_pds': Preset({'method': 'pc', 'precondition': 'pds', 'grid': 'ladder'}, ode=False),
    'pc_pds_tuned': Preset({'method': 'pc', 'precondition': 'pds', 'grid': 'ladder'},
                           ode=False),
    'pf_euler': Preset({'method': 'pf_euler', 'grid': 'ladder'}),
    'ddim': Preset({'method': 'ddim', 'grid': 'logsnr'}),
    'dpm_solver_2m': Preset({'method': 'dpm_solver_2m', 'grid': 'logsnr'}),
    'dpm_solver_3m': Preset({'method': 'dpm_solver_3m', 'grid': 'logsnr'}, extra=1),
    'unipc': Preset({'method': 'unipc', 'grid': 'logsnr'}),
    'edm_heun': Preset({'method': 'edm_heun', 'grid': 'karras'}, per_step=2, extra=-1),
    'edm_stochastic': Preset({'method': 'edm_stochastic', 'grid': 'karras'}, per_step=2,
                             extra=-1),
    'dopri5': Preset({'method': 'dopri5', 'grid': 'ladder'}, tolerance='rtol'),
    'adaptive_sde': Preset({'method': 'adaptive_sde', 'grid': 'ladder'}, tolerance='eps_rel'),
}


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
        check_choice('bench.samplers', name, tuple(PRESETS))
    if len(set(names)) != len(names):
        raise ConfigError('bench.samplers', tuple(names), 'distinct sampler names')
    if 'pc_pds_tuned' in names and not config.sampling.pds.get('tuned', ''):
        raise ConfigError('sampling.pds.tuned', '', "a tune/alpha.json from --mode=tune with "
                          "bench.samplers containing 'pc_pds_tuned'")
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
    preset = PRESETS[name]
    base = copy.deepcopy(config)
    s = base.sampling
    for key, value in preset.fields.items():
        s[key] = value
    if name != 'pc_pds_tuned':
        s.pds.tuned = ''
    if preset.ode:
        s.prior, s.precondition = config.bench.ode_prior, 'none'
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
    per = preset.per_step
    if name.startswith('pc'):
        corrector = s.n_steps_each if s.corrector != 'none' else 0
        per = corrector + (1 if s.predictor != 'none' else 0)
    low, high = 1, 10**9
    if name == 'pc_pds_tuned':  # only the iteration counts the table covers
        steps = tuned_alpha.read_table(s.pds.tuned)[0]
        low, high = steps[0], steps[-1]
    out = []
    for budget in budgets:
        n = (budget - preset.extra) // per
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
    if config.bench.estimate == 'sampled' or PRESETS[name].tolerance:
        return 'sampled'
    try:
        check_config(cfg)
    except ConfigError:
        if config.bench.estimate == 'population':
            raise
        return 'sampled'
    return 'population'


def run(config, workdir: str, overwrite: bool = False) -> list[dict]:
    """The sampler comparison (module docstring), for :func:`pds.modes.bench.run`: every
    sampler's config is built and checked before the outputs are claimed."""
    names, budgets, rtols, eps_rels = settings(config)
    num, batch = config.bench.num_samples, config.bench.batch_size
    count_rounds(num, batch)
    ladders = {n: cell_configs(config, n, budgets, rtols, eps_rels) for n in names}
    estimates = {n: [estimate_for(config, cfg, n) for _, cfg in ladders[n]] for n in names}
    paths = {f: os.path.join(workdir, 'bench', f) for f in FILES}
    replace.check_not_interrupted(workdir)
    experiments = bench.Experiments(config, workdir)
    exps = {name: [experiments.for_config(cfg) for _, cfg in ladders[name]] for name in names}
    for name in names:
        for (_, cfg), exp in zip(ladders[name], exps[name], strict=True):
            bench.solver_from_config(cfg, exp.sde)
    replace.claim(list(paths.values()), overwrite)

    say = print if distributed.is_main() else (lambda *a, **k: None)
    floor = expected_floor(bench.target_moments(experiments.base)[1])
    target = float(config.bench.target_fd) or floor
    say(f'samplers {", ".join(names)}; target FD {target:.4g} (50k-sample floor '
        f'{floor:.4g})', flush=True)
    rows = []
    for name in names:
        for (rung, cfg), est, exp in zip(ladders[name], estimates[name], exps[name],
                                         strict=True):
            if est == 'population':
                fields = bench.population_fields(cfg, exp)
            else:
                fields = bench.sampled_fields(cfg, exp, num, batch, f'{name} {rung}')
            row = {'sampler': name, 'rung': rung, **fields}
            row.setdefault('nfe_max', row['nfe'])
            rows.append(row)
            se = f' +- {row["frechet_distance_se"]:.3g}' if est == 'sampled' else ''
            say(f'{name:>16} {rung:>14}  NFE {row["nfe"]:>8.4g}  FD '
                f'{row["frechet_distance"]:10.4g}{se}', flush=True)
    if distributed.is_main():
        with replace.replacing(workdir, list(paths.values()), overwrite, tag=None):
            outputs.write_text(paths['samplers.csv'], to_csv(rows, floor, target))
            outputs.write_text(paths['samplers.md'], to_markdown(rows, floor, target, config))
            plot(paths['samplers.png'], rows, floor, target, config)
    return rows


def reached(rows: list[dict], target: float) -> dict[str, float | None]:
    """Per sampler, the smallest NFE whose FD (+ 2 SE when sampled) is at or under target."""
    out: dict[str, float | None] = {}
    for r in rows:
        out.setdefault(r['sampler'], None)
        if r['frechet_distance'] + 2.0 * r['frechet_distance_se'] <= target:
            best = out[r['sampler']]
            out[r['sampler']] = r['nfe'] if best is None else min(best, r['nfe'])
    return out


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


def _fmt(v: float) -> str:
    return f'{v:.1f}' if abs(v) >= 100 else f'{v:.3g}'


def to_markdown(rows: list[dict], floor: float, target: float, config) -> str:
    names = list(dict.fromkeys(r['sampler'] for r in rows))
    reach = reached(rows, target)
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
            fd = _fmt(r['frechet_distance'])
            if r['estimate'] == 'sampled':
                fd += f" +- {_fmt(r['frechet_distance_se'])}"
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
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(7.6, 5.0), dpi=120)
    names = list(dict.fromkeys(r['sampler'] for r in rows))
    for i, name in enumerate(names):
        nfe, fd, se = plotting.fd_curve(rows, 'sampler', name)
        style = ':' if PRESETS[name].tolerance else ('-' if name.startswith('pc') else '--')
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
    plotting.save(fig, path)

