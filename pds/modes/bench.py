"""``--mode=bench``: sample quality against NFE, baseline and PDS, on a known distribution
(:mod:`pds.quality.estimates` measures; with ``bench.samplers`` set, every sampler of
:mod:`pds.quality.samplers` instead). On real data (a network trained on a dataset that is
not an exact target) the samplers of ``bench.samplers`` are measured against held-out
images instead (:mod:`pds.quality.data_bench`: SWD, Fourier FD, data floor).

Two estimates, chosen by ``bench.estimate`` (``auto``: the first that applies):

- ``population``: with the exact score and a Fourier-diagonal preconditioner (no space mask),
  every step is affine per mode, so the output's per-mode moments propagate exactly
  (``pds.analytic.moments``) and the **population** Frechet distance has no sampling noise.
  Methods: the baseline, PDS at every ``bench.alphas`` in the reference predictor form and
  PDS at ``sampling.pds.alpha`` in the invariant form. ``bench.spot_checks`` cells
  ((iterations, alpha), alpha 0 for the baseline) are also sampled, ``bench.num_samples``
  each, to show the sampler agrees with its moments: the sampled unbiased FD, its
  standard error and the z-score against the exact value.
- ``sampled`` (a network's score, a space mask, the Gaussian-mixture field): every cell is
  sampled, the baseline and PDS at ``sampling.pds.alpha``, ``bench.num_samples`` each; the
  unbiased FD (``FourierMoments.unbiased_frechet_distance``) with its standard error, the
  plug-in statistic beside it, labelled. On the mixture the FD is to the Gaussian with the
  mixture's exact per-mode mean and variance (``GaussianMixtureField.exact_moments``; the DC
  modes' cross-channel covariance is left out), and each cell also reports the mixture
  weights the samples recover (``mixture_report``), with their largest |z|.

The reference line is the expected FD of 50,000 exact samples (``fd.expected_floor``): what
an FID-style 50k evaluation can resolve. Process 0 writes ``bench/quality.csv``,
``bench/quality.md`` and ``bench/quality.png`` (FD against NFE, one curve per method, the
floor line and the spot checks with their error bars).
"""

from __future__ import annotations

import os

import numpy as np

from pds.analytic.fd import BANDS
from pds.analytic.targets import check_known_distribution, experiment_target
from pds.experiment.rounds import count_rounds
from pds.quality import data_bench, estimates, figures, samplers
from pds.quality.estimates import Experiments, Method, floor_50k
from pds.quality.report import nfe_to_target, number
from pds.runtime import distributed
from pds.runtime.errors import ConfigError
from pds.sampling.solver import solver_from_config
from pds.storage import outputs, replace


def ladder(config) -> list[int]:
    steps = list(config.bench.steps)
    if not steps or any(not isinstance(s, int) or s < 1 for s in steps):
        raise ConfigError('bench.steps', tuple(steps), 'a non-empty list of integers >= 1')
    return steps


def spot_checks(config) -> list[tuple[int, Method]]:
    out = []
    for item in config.bench.spot_checks:
        ok = (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], int)
              and item[0] >= 1 and isinstance(item[1], (int, float))
              and (item[1] == 0 or item[1] > 1))
        if not ok:
            raise ConfigError('bench.spot_checks', tuple(config.bench.spot_checks),
                              'pairs (iterations >= 1, alpha > 1, or 0 for the baseline)')
        out.append((item[0], Method(None if item[1] == 0 else float(item[1]))))
    return out


def run(config, workdir: str, overwrite: bool = False) -> list[dict]:
    outputs.prepare_workdir(workdir)
    if experiment_target(config) is None:  # real data: measured against held-out images
        if not config.bench.get('samplers', ()):
            raise ConfigError('bench.samplers', (), 'sampler names (pds/quality/samplers.py) '
                              f'for --mode=bench on data.dataset={config.data.dataset!r}, '
                              'e.g. (\'pc\', \'pc_pds\', \'dpm_solver_3m\')')
        return data_bench.run(config, workdir, overwrite)
    check_known_distribution(config, '--mode=bench')
    if config.bench.get('samplers', ()):
        return run_samplers(config, workdir, overwrite)
    steps = ladder(config)
    estimate = estimates.choose_estimate(config)
    curves = estimates.methods(config, estimate)
    checks = spot_checks(config) if estimate == 'population' else []
    num, batch = config.bench.num_samples, config.bench.batch_size
    count_rounds(num, batch)
    bench_dir = os.path.join(workdir, 'bench')
    paths = {ext: os.path.join(bench_dir, f'quality.{ext}') for ext in ('csv', 'md', 'png')}
    replace.check_not_interrupted(workdir)
    replace.claim(list(paths.values()), overwrite)

    say = print if distributed.is_main() else (lambda *a, **k: None)
    experiments = Experiments(config, workdir)
    floor = floor_50k(experiments.base)
    say(f'{estimate} estimate; expected FD of 50,000 exact samples: {floor:.4g}', flush=True)
    rows = []
    for method in curves:
        for n in steps:
            if estimate == 'population':
                row = estimates.population_cell(config, experiments, method, n)
            else:
                row = estimates.sampled_cell(config, experiments, method, n, num, batch)
            rows.append(row)
            se = (f' +- {row["frechet_distance_se"]:.3g}' if row['estimate'] == 'sampled'
                  else '')
            say(f'{method.label:>20} {n:5d} it  NFE {row["nfe"]:>6}  '
                f'FD {row["frechet_distance"]:10.4g}{se}', flush=True)
    checked = []
    computed = {(r['iterations'], r['method']): r for r in rows}
    for n, method in checks:
        exact = (computed.get((n, method.label))
                 or estimates.population_cell(config, experiments, method, n))
        row = estimates.sampled_cell(config, experiments, method, n, num, batch)
        row['population_fd'] = exact['frechet_distance']
        row['ring_pooled_fd'] = exact['ring_pooled_fd']
        row['z'] = (row['frechet_distance'] - exact['ring_pooled_fd']) / row[
            'frechet_distance_se']
        checked.append(row)
        say(f'spot check {method.label} {n} it: sampled {row["frechet_distance"]:.4g} +- '
            f'{row["frechet_distance_se"]:.3g}, exact {exact["ring_pooled_fd"]:.4g} ring-pooled'
            f' ({exact["frechet_distance"]:.4g} per mode; z {row["z"]:+.2f})', flush=True)

    if distributed.is_main():  # one report (every process holds the same summed moments)
        with replace.replacing(workdir, list(paths.values()), overwrite, tag=None):
            outputs.write_text(paths['csv'], estimates.to_csv(rows + checked, floor))
            outputs.write_text(paths['md'], to_markdown(rows, checked, floor, estimate, num))
            plot(paths['png'], rows, checked, floor, config)
    return rows + checked


def run_samplers(config, workdir: str, overwrite: bool = False) -> list[dict]:
    """The sampler comparison (:mod:`pds.quality.samplers`): every sampler's config is built
    and checked before the outputs are claimed."""
    names, budgets, rtols, eps_rels = samplers.settings(config)
    num, batch = config.bench.num_samples, config.bench.batch_size
    count_rounds(num, batch)
    ladders = {n: samplers.cell_configs(config, n, budgets, rtols, eps_rels) for n in names}
    chosen = {n: [samplers.estimate_for(config, cfg, n) for _, cfg in ladders[n]] for n in names}
    paths = {f: os.path.join(workdir, 'bench', f) for f in samplers.FILES}
    replace.check_not_interrupted(workdir)
    experiments = Experiments(config, workdir)
    exps = {name: [experiments.for_config(cfg) for _, cfg in ladders[name]] for name in names}
    for name in names:
        for (_, cfg), exp in zip(ladders[name], exps[name], strict=True):
            solver_from_config(cfg, exp.sde)
    replace.claim(list(paths.values()), overwrite)

    say = print if distributed.is_main() else (lambda *a, **k: None)
    floor = floor_50k(experiments.base)
    target = float(config.bench.target_fd) or floor
    say(f'samplers {", ".join(names)}; target FD {target:.4g} (50k-sample floor '
        f'{floor:.4g})', flush=True)
    rows = []
    for name in names:
        for (rung, cfg), est, exp in zip(ladders[name], chosen[name], exps[name],
                                         strict=True):
            if est == 'population':
                fields = estimates.population_fields(cfg, exp)
            else:
                fields = estimates.sampled_fields(cfg, exp, num, batch, f'{name} {rung}')
            row = {'sampler': name, 'rung': rung, **fields}
            row.setdefault('nfe_max', row['nfe'])
            rows.append(row)
            se = f' +- {row["frechet_distance_se"]:.3g}' if est == 'sampled' else ''
            say(f'{name:>16} {rung:>14}  NFE {row["nfe"]:>8.4g}  FD '
                f'{row["frechet_distance"]:10.4g}{se}', flush=True)
    if distributed.is_main():
        with replace.replacing(workdir, list(paths.values()), overwrite, tag=None):
            outputs.write_text(paths['samplers.csv'], samplers.to_csv(rows, floor, target))
            outputs.write_text(paths['samplers.md'],
                               samplers.to_markdown(rows, floor, target, config))
            samplers.plot(paths['samplers.png'], rows, floor, target, config)
    return rows


def to_markdown(rows: list[dict], checked: list[dict], floor: float, estimate: str,
                num: int) -> str:
    labels = list(dict.fromkeys(r['method'] for r in rows))
    by = {(r['iterations'], r['method']): r for r in rows}
    if estimate == 'population':
        head = ('Population Frechet distance to the field (exact moments, no sampling '
                f'noise); the best method of each row in bold. Expected FD of 50,000 exact '
                f'samples: {floor:.3g}.')
    else:
        head = (f'Sampled Frechet distance to the data distribution, {num} samples per cell: the '
                'unbiased estimate +- its standard error (pds/analytic/fd.py). Expected FD '
                f'of 50,000 exact samples: {floor:.3g}.')
    lines = [head, '', '| iterations | NFE | ' + ' | '.join(labels) + ' |',
             '|---:|---:|' + '---:|' * len(labels)]
    for n in sorted({r['iterations'] for r in rows}):
        cells = [by[(n, m)] for m in labels]
        best = min(c['frechet_distance'] for c in cells)
        text = []
        for c in cells:
            t = number(c['frechet_distance'])
            if c['estimate'] == 'sampled':
                t += f' +- {number(c["frechet_distance_se"])}'
            text.append(f'**{t}**' if c['frechet_distance'] == best else t)
        lines.append(f'| {n} | {cells[0]["nfe"]} | ' + ' | '.join(text) + ' |')
    reach = nfe_to_target(rows, floor, 'method', margin_se=0.0)
    lines.append('| NFE to floor | | ' + ' | '.join(str(reach[m] or '-') for m in labels) + ' |')
    if estimate == 'sampled':
        lines += ['', 'The plug-in statistic of the same samples (biased at small n: it rewards '
                  'under-dispersion) per cell, for comparison with older reports:', '']
        lines += [f"- {r['method']} {r['iterations']} it: {number(r['frechet_distance_plugin'])}"
                  for r in rows]
    if rows[0].get('mixture_weights') is not None:
        lines += ['', 'Mixture weights recovered (each sample assigned to its most likely '
                  'component; largest |z| against the target weights, binomial errors):', '']
        lines += [f"- {r['method']} {r['iterations']} it: "
                  + ' / '.join(f'{p:.3f}' for p in r['mixture_weights'])
                  + f" (max |z| {r['mixture_weights_z_max']:.2f})" for r in rows]
    if checked:
        lines += ['', f'Spot checks: the same cells sampled, {num} samples each: the unbiased '
                  'FD +- its standard error against the exact value of what it estimates (the '
                  'ring-pooled FD: variances pooled over each integer radius; the per-mode '
                  'population FD beside it).', '',
                  '| iterations | method | sampled | exact, ring-pooled | exact, per mode | z |',
                  '|---:|---|---:|---:|---:|---:|']
        lines += [f"| {r['iterations']} | {r['method']} | {number(r['frechet_distance'])} +- "
                  f"{number(r['frechet_distance_se'])} | {number(r['ring_pooled_fd'])} | "
                  f"{number(r['population_fd'])} | {r['z']:+.2f} |" for r in checked]
    lines += ['', 'Band variance ratios (geometric mean of output / target variance, low / '
              'mid / high thirds of |k|; under 1: under-dispersed), at the last iteration count:',
              '']
    last = max(r['iterations'] for r in rows)
    lines += [f"- {m}: " + ' / '.join(f"{by[(last, m)][f'variance_ratio_{b}']:.3f}"
                                       for b in BANDS) for m in labels]
    return '\n'.join(lines) + '\n'


def plot(path: str, rows: list[dict], checked: list[dict], floor: float, config) -> None:
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.6), dpi=120)
    labels = list(dict.fromkeys(r['method'] for r in rows))
    for i, label in enumerate(labels):
        nfe, fd, se = figures.fd_curve(rows, 'method', label)
        style = '--' if 'invariant' in label else '-'
        line, = ax.plot(nfe, np.maximum(fd, 1e-6), style, marker='os^vD<>'[i % 7], ms=4,
                        label=label)
        if np.any(se > 0):
            ax.fill_between(nfe, np.maximum(fd - 2 * se, 1e-6), fd + 2 * se,
                            color=line.get_color(), alpha=0.15)
    for r in checked:
        ax.errorbar(r['nfe'], r['frechet_distance'], yerr=2 * r['frechet_distance_se'],
                    fmt='x', color='k', capsize=3)
    if checked:
        ax.plot([], [], 'kx', label='sampled spot check (+- 2 SE)')
    ax.axhline(floor, color='k', lw=1, ls=':', label='expected FD of 50k exact samples')
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('NFE (score evaluations per sample)')
    ax.set_ylabel('Frechet distance to the data distribution')
    size = config.data.image_size
    ax.set_title(f'{config.data.dataset} {size}x{size}, sigma_max={config.model.sigma_max}; '
                 'lower is better', fontsize=9)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    figures.save(fig, path)
