"""``--mode=bench``: sample quality against NFE, baseline and PDS, on a known distribution.

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

import copy
import csv
import dataclasses
import io
import os
import time

import numpy as np

from pds.analytic.fd import BANDS, FourierMoments, expected_floor
from pds.analytic.moments import check_config, population_moments
from pds.method import precondition
from pds.method.precondition import Identity
from pds.modes import plotting
from pds.modes.experiment import Experiment, experiment_from_config, prior_moments, stats_images
from pds.modes.sample import count_rounds, sample_rounds
from pds.runtime import distributed
from pds.runtime.errors import ConfigError
from pds.sampling.grid import sampling_schedule
from pds.sampling.solver import solver_from_config
from pds.storage import outputs, replace

ESTIMATES = ('auto', 'population', 'sampled')
COLUMNS = ('iterations', 'nfe', 'method', 'alpha', 'predictor_form', 'estimate',
           'frechet_distance', 'frechet_distance_se', 'frechet_distance_plugin',
           *(f'variance_ratio_{b}' for b in BANDS), 'seconds')


@dataclasses.dataclass(frozen=True)
class Method:
    """One curve: the baseline (alpha None) or PDS at alpha in a predictor form."""

    alpha: float | None
    form: str = 'reference'

    @property
    def label(self) -> str:
        if self.alpha is None:
            return 'baseline'
        return f'PDS a={self.alpha:g}' + (' invariant' if self.form == 'invariant' else '')

    def configure(self, config):
        """A copy of ``config`` sampling with this method."""
        cfg = copy.deepcopy(config)
        cfg.sampling.precondition = 'none' if self.alpha is None else 'pds'
        cfg.sampling.pds.tuned = ''  # this method's alpha, not a tuned table's
        if self.alpha is not None:
            cfg.sampling.pds.alpha = self.alpha
            cfg.sampling.pds.predictor_form = self.form
        return cfg


def ladder(config) -> list[int]:
    steps = list(config.bench.steps)
    if not steps or any(not isinstance(s, int) or s < 1 for s in steps):
        raise ConfigError('bench.steps', tuple(steps), 'a non-empty list of integers >= 1')
    return steps


def choose_estimate(config) -> str:
    """``bench.estimate``, with ``auto`` resolved (ConfigError names what does not fit)."""
    est = config.bench.estimate
    if est not in ESTIMATES:
        raise ConfigError('bench.estimate', est, ', '.join(ESTIMATES))
    if est == 'sampled':
        return est
    try:
        check_config(config)
    except ConfigError:
        if est == 'population':
            raise
        return 'sampled'
    return 'population'


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


def methods(config, estimate: str) -> list[Method]:
    alpha = float(config.sampling.pds.alpha)
    if estimate == 'sampled':
        return [Method(None), Method(alpha, config.sampling.pds.predictor_form)]
    alphas = [float(a) for a in config.bench.alphas]
    if any(a <= 1 for a in alphas):
        raise ConfigError('bench.alphas', tuple(config.bench.alphas), 'values > 1')
    return [Method(None), *(Method(a) for a in alphas), Method(alpha, 'invariant')]


def check_known_distribution(config, mode: str) -> None:
    """ConfigError unless the data distribution is known exactly (the FD needs it)."""
    if config.data.dataset not in ('gaussian_field', 'gaussian_mixture'):
        raise ConfigError('data.dataset', config.data.dataset,
                          f"'gaussian_field' or 'gaussian_mixture' for {mode} (the exact "
                          'Frechet distance needs the true distribution; the score may be exact '
                          'or a trained network)')


def run(config, workdir: str, overwrite: bool = False) -> list[dict]:
    outputs.prepare_workdir(workdir)
    check_known_distribution(config, '--mode=bench')
    if config.bench.get('samplers', ()):
        from pds.modes import sampler_bench

        return sampler_bench.run(config, workdir, overwrite)
    steps = ladder(config)
    estimate = choose_estimate(config)
    curves = methods(config, estimate)
    checks = spot_checks(config) if estimate == 'population' else []
    num, batch = config.bench.num_samples, config.bench.batch_size
    count_rounds(num, batch)
    bench_dir = os.path.join(workdir, 'bench')
    paths = {ext: os.path.join(bench_dir, f'quality.{ext}') for ext in ('csv', 'md', 'png')}
    replace.check_not_interrupted(workdir)
    replace.claim(list(paths.values()), overwrite)

    say = print if distributed.is_main() else (lambda *a, **k: None)
    experiments = Experiments(config, workdir)
    floor = expected_floor(target_moments(experiments.base)[1])
    say(f'{estimate} estimate; expected FD of 50,000 exact samples: {floor:.4g}', flush=True)
    rows = []
    for method in curves:
        for n in steps:
            if estimate == 'population':
                row = population_cell(config, experiments, method, n)
            else:
                row = sampled_cell(config, experiments, method, n, num, batch)
            rows.append(row)
            se = (f' +- {row["frechet_distance_se"]:.3g}' if row['estimate'] == 'sampled'
                  else '')
            say(f'{method.label:>20} {n:5d} it  NFE {row["nfe"]:>6}  '
                f'FD {row["frechet_distance"]:10.4g}{se}', flush=True)
    checked = []
    computed = {(r['iterations'], r['method']): r for r in rows}
    for n, method in checks:
        exact = computed.get((n, method.label)) or population_cell(config, experiments, method,
                                                                   n)
        row = sampled_cell(config, experiments, method, n, num, batch)
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
            outputs.write_text(paths['csv'], to_csv(rows + checked, floor))
            outputs.write_text(paths['md'], to_markdown(rows, checked, floor, estimate, num))
            plot(paths['png'], rows, checked, floor, config)
    return rows + checked


class Experiments:
    """The experiment of each method with the sde and grid of a given iteration count. The
    score model is restored once; the PDS mask is computed once per alpha."""

    def __init__(self, config, workdir: str | None = None):
        self.config, self.workdir = config, workdir
        alpha = float(config.sampling.pds.alpha)
        pds = experiment_from_config(Method(alpha).configure(config), workdir)
        self.base = dataclasses.replace(pds, precond=Identity())
        self._precond = {alpha: pds.precond}
        self._images: dict[int, np.ndarray] = {}

    def _stats_images(self, n: int) -> np.ndarray:
        """The mask statistics' images, drawn or loaded once for every alpha."""
        if n not in self._images:
            self._images[n] = stats_images(self.config, n)
        return self._images[n]

    def get(self, method: Method, steps: int) -> tuple[Experiment, object]:
        cfg = method.configure(self.config)
        cfg.sampling.steps = steps
        return self.for_config(cfg), cfg

    def for_config(self, cfg) -> Experiment:
        """The experiment of ``cfg``, a variant of the bench's config in its sampling fields
        (steps, grid, prior, preconditioner): the score model and field are shared, the
        PDS preconditioner is built once per alpha."""
        exp = self.base
        if cfg.sampling.precondition != 'none':
            alpha = float(cfg.sampling.pds.alpha)
            if alpha not in self._precond:
                self._precond[alpha] = precondition.preconditioner_from_config(
                    cfg, exp.image_shape, self._stats_images)
            exp = dataclasses.replace(exp, precond=self._precond[alpha])
        sde, grid = sampling_schedule(cfg)
        mean, spectrum = prior_moments(cfg, exp.field, exp.mixture)
        return dataclasses.replace(exp, sde=sde, grid=grid, prior_mean=mean,
                                   prior_spectrum=spectrum)


def _base_row(method: Method, n: int) -> dict:
    return {'iterations': n, 'method': method.label, 'alpha': method.alpha,
            'predictor_form': method.form if method.alpha is not None else ''}


def population_cell(config, experiments: Experiments, method: Method, n: int) -> dict:
    exp, cfg = experiments.get(method, n)
    return {**_base_row(method, n), **population_fields(cfg, exp)}


def population_fields(cfg, exp: Experiment) -> dict:
    """The population FD of the sampler ``cfg`` on ``exp`` (exact moments) and its report."""
    t0 = time.perf_counter()
    pm = population_moments(cfg, exp)
    return {'nfe': pm.nfe, 'estimate': 'population',
            'frechet_distance': pm.frechet_distance, 'frechet_distance_se': 0.0,
            'frechet_distance_plugin': None, 'ring_pooled_fd': pm.ring_pooled_fd(),
            **{f'variance_ratio_{b}': pm.band_ratios[b] for b in BANDS},
            'seconds': time.perf_counter() - t0}


def target_moments(exp: Experiment) -> tuple[np.ndarray, np.ndarray]:
    """(per-channel mean (C,), per-mode variance (H, W, C)) of the data distribution: the
    field's, or the mixture's exact moments with each DC mode's own channel variance."""
    h, w, _ = exp.image_shape
    if exp.field is not None:
        return np.asarray(exp.field.mean, np.float64), exp.field.spectrum(h, w)
    mom = exp.mixture.exact_moments(h, w)
    spectrum = mom['spectrum'].copy()
    spectrum[0, 0] = np.diag(mom['dc_covariance'])
    return mom['mean'][0, 0], spectrum


def sampled_cell(config, experiments: Experiments, method: Method, n: int, num: int,
                 batch: int) -> dict:
    exp, cfg = experiments.get(method, n)
    fields = sampled_fields(cfg, exp, num, batch, f'{method.label} {n} it')
    return {**_base_row(method, n), **fields}


def sampled_fields(cfg, exp: Experiment, num: int, batch: int, desc: str) -> dict:
    """The unbiased FD +- its standard error of ``num`` samples of the sampler ``cfg`` on
    ``exp`` (and the mixture weights they recover, on the mixture), with the report."""
    rows: list[np.ndarray] = []
    keep = (lambda r: rows.append(r.rows)) if exp.mixture is not None else None
    res = sample_rounds(exp, solver_from_config(cfg, exp.sde), cfg, num, batch, keep, desc=desc)
    mean, spectrum = target_moments(exp)
    extra = {}
    moments = res.moments
    if exp.mixture is not None:  # every process takes part (a collective)
        from pds.analytic.mixture import mixture_report

        x = distributed.gather_rows(np.concatenate(rows))
        moments = FourierMoments(mean)
        moments.update(x)
        report = mixture_report(x, exp.mixture)
        extra = {'mixture_weights': report['weights'],
                 'mixture_weights_z_max': float(np.max(np.abs(report['weights_z'])))}
    summary = moments.summary(spectrum)
    return {'nfe': res.nfe, 'nfe_max': res.nfe_max, 'estimate': 'sampled', **extra,
            'frechet_distance': summary['frechet_distance_unbiased'],
            'frechet_distance_se': moments.unbiased_fd_standard_error(spectrum),
            'frechet_distance_plugin': summary['frechet_distance'],
            **{f'variance_ratio_{b}': summary['band_variance_ratio'][b] for b in BANDS},
            'seconds': res.sampling_seconds + res.compile_seconds}


def to_csv(rows: list[dict], floor: float) -> str:
    buf = io.StringIO()
    extra = ('population_fd', 'ring_pooled_fd', 'z', 'mixture_weights_z_max')
    writer = csv.DictWriter(buf, fieldnames=[*COLUMNS, *extra, 'floor_50k'])
    writer.writeheader()
    for r in rows:
        writer.writerow({**{k: r.get(k, '') for k in (*COLUMNS, *extra)}, 'floor_50k': floor})
    return buf.getvalue()


def _num(v: float) -> str:
    return f'{v:.1f}' if abs(v) >= 100 else f'{v:.3g}'


def nfe_to_floor(rows: list[dict], floor: float) -> dict[str, int | None]:
    """Per method, the smallest NFE on the ladder whose FD is at or below the floor."""
    out: dict[str, int | None] = {}
    for r in rows:
        out.setdefault(r['method'], None)
        if r['frechet_distance'] <= floor:
            best = out[r['method']]
            out[r['method']] = r['nfe'] if best is None else min(best, r['nfe'])
    return out


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
            t = _num(c['frechet_distance'])
            if c['estimate'] == 'sampled':
                t += f' +- {_num(c["frechet_distance_se"])}'
            text.append(f'**{t}**' if c['frechet_distance'] == best else t)
        lines.append(f'| {n} | {cells[0]["nfe"]} | ' + ' | '.join(text) + ' |')
    reach = nfe_to_floor(rows, floor)
    lines.append('| NFE to floor | | ' + ' | '.join(str(reach[m] or '-') for m in labels) + ' |')
    if estimate == 'sampled':
        lines += ['', 'The plug-in statistic of the same samples (biased at small n: it rewards '
                  'under-dispersion) per cell, for comparison with older reports:', '']
        lines += [f"- {r['method']} {r['iterations']} it: {_num(r['frechet_distance_plugin'])}"
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
        lines += [f"| {r['iterations']} | {r['method']} | {_num(r['frechet_distance'])} +- "
                  f"{_num(r['frechet_distance_se'])} | {_num(r['ring_pooled_fd'])} | "
                  f"{_num(r['population_fd'])} | {r['z']:+.2f} |" for r in checked]
    lines += ['', 'Band variance ratios (geometric mean of output / target variance, low / '
              'mid / high thirds of |k|; under 1: under-dispersed), at the last iteration count:',
              '']
    last = max(r['iterations'] for r in rows)
    lines += [f"- {m}: " + ' / '.join(f"{by[(last, m)][f'variance_ratio_{b}']:.3f}"
                                       for b in BANDS) for m in labels]
    return '\n'.join(lines) + '\n'


def plot(path: str, rows: list[dict], checked: list[dict], floor: float, config) -> None:
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.6), dpi=120)
    labels = list(dict.fromkeys(r['method'] for r in rows))
    for i, label in enumerate(labels):
        nfe, fd, se = plotting.fd_curve(rows, 'method', label)
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
    plotting.save(fig, path)
