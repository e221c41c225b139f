"""``--mode=bench``: sample quality against NFE, baseline and PDS on the same seed.

For each iteration count of ``bench.steps`` it draws ``bench.num_samples`` samples with
``sampling.precondition='none'`` and ``'pds'`` (identical noise draws) and measures the exact
Frechet distance to the Gaussian field (the score may be exact or a network trained on the
field). Process 0 writes ``bench/quality.csv``, ``bench/quality.md`` and
``bench/quality.png`` (FD against NFE, both curves, the noise floor as a band).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import os

import numpy as np

from pds.analytic.fd import noise_floor
from pds.method.precondition import Identity
from pds.modes.experiment import experiment_from_config
from pds.modes.sample import count_rounds, sample_rounds
from pds.runtime import distributed
from pds.runtime.errors import ConfigError
from pds.sampling.grid import sampling_schedule
from pds.sampling.solver import solver_from_config
from pds.storage import outputs

METHODS = ('none', 'pds')
COLUMNS = ('iterations', 'nfe', 'method', 'frechet_distance', 'ratio_to_floor',
           'sampling_seconds', 'compile_seconds')


def ladder(config) -> list[int]:
    steps = list(config.bench.steps)
    if not steps or any(not isinstance(s, int) or s < 1 for s in steps):
        raise ConfigError('bench.steps', tuple(steps), 'a non-empty list of integers >= 1')
    return steps


def run(config, workdir: str, overwrite: bool = False) -> list[dict]:
    outputs.prepare_workdir(workdir)
    if config.data.dataset != 'gaussian_field':
        raise ConfigError('data.dataset', config.data.dataset,
                          "'gaussian_field' for --mode=bench (the exact Frechet distance needs "
                          'the true distribution; the score may be exact or a trained network)')
    steps = ladder(config)
    num, batch = config.bench.num_samples, config.bench.batch_size
    count_rounds(num, batch)
    bench_dir = os.path.join(workdir, 'bench')
    paths = {ext: os.path.join(bench_dir, f'quality.{ext}') for ext in ('csv', 'md', 'png')}
    outputs.claim_outputs(list(paths.values()), overwrite)

    cfg = copy.deepcopy(config)
    cfg.sampling.precondition = 'pds'
    pds_exp = experiment_from_config(cfg, workdir)  # the score model is built (restored) once
    base = {'pds': pds_exp, 'none': dataclasses.replace(pds_exp, precond=Identity())}
    h, w, _ = base['none'].image_shape
    floor, floor_std = noise_floor(base['none'].field, num, h, w, seed=config.seed + 1)
    say = print if distributed.is_main() else (lambda *a, **k: None)
    say(f'noise floor for {num} samples: {floor:.2f} +- {floor_std:.2f}', flush=True)

    rows = []
    for n in steps:
        for method in METHODS:
            cfg = copy.deepcopy(config)
            cfg.sampling.steps = n
            cfg.sampling.precondition = method
            sde, grid = sampling_schedule(cfg)
            exp = dataclasses.replace(base[method], sde=sde, grid=grid)
            res = sample_rounds(exp, solver_from_config(cfg, sde), cfg, num, batch,
                                desc=f'{method} {n} it')
            fd = res.moments.frechet_distance(exp.field.spectrum(h, w))
            rows.append({'iterations': n, 'nfe': res.nfe, 'method': method,
                         'frechet_distance': fd, 'ratio_to_floor': fd / floor,
                         'sampling_seconds': res.sampling_seconds,
                         'compile_seconds': res.compile_seconds})
            say(f'{method:>4} {n:5d} it  NFE {res.nfe:>5}  FD {fd:10.2f}  '
                  f'({fd / floor:.2f} x floor)  {res.sampling_seconds:.1f} s', flush=True)

    if distributed.is_main():  # one report (every process holds the same summed moments)
        outputs.write_text(paths['csv'], to_csv(rows, floor, floor_std))
        outputs.write_text(paths['md'], to_markdown(rows, floor, floor_std, num))
        plot(paths['png'], rows, floor, floor_std, num, config)
    return rows


def to_csv(rows: list[dict], floor: float, floor_std: float) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*COLUMNS, 'noise_floor', 'noise_floor_std'])
    writer.writeheader()
    for r in rows:
        writer.writerow({**{k: r[k] for k in COLUMNS}, 'noise_floor': floor,
                         'noise_floor_std': floor_std})
    return buf.getvalue()


def _num(v: float) -> str:
    """One decimal for large values, three significant digits for small ones."""
    return f'{v:.1f}' if abs(v) >= 100 else f'{v:.3g}'


def to_markdown(rows: list[dict], floor: float, floor_std: float, num: int) -> str:
    by = {(r['iterations'], r['method']): r for r in rows}
    lines = [f'Exact Frechet distance to the Gaussian field, {num} samples per cell; noise '
             f'floor (same statistic on {num} exact samples): {_num(floor)} +- {_num(floor_std)}.',
             '', '| iterations | NFE | FD baseline | FD PDS | PDS / baseline |',
             '|---:|---:|---:|---:|---:|']
    for n in sorted({r['iterations'] for r in rows}):
        b, p = by[(n, 'none')], by[(n, 'pds')]
        lines.append(f"| {n} | {b['nfe']} | {_num(b['frechet_distance'])} | "
                     f"{_num(p['frechet_distance'])} | "
                     f"{p['frechet_distance'] / b['frechet_distance']:.3f} |")
    return '\n'.join(lines) + '\n'


def plot(path: str, rows: list[dict], floor: float, floor_std: float, num: int, config) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for method, label, style in (('none', 'baseline (PC)', 'o-'), ('pds', 'PDS', 's-')):
        pts = sorted((r['nfe'], r['frechet_distance']) for r in rows if r['method'] == method)
        ax.plot(*np.asarray(pts).T, style, label=label)
    ax.axhline(floor, color='k', lw=1, ls='--', label=f'noise floor ({num} exact samples)')
    ax.axhspan(floor - floor_std, floor + floor_std, color='k', alpha=0.1)
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('NFE (score evaluations per sample)')
    ax.set_ylabel('Frechet distance to the exact field')
    size = config.data.image_size
    ax.set_title(f'Gaussian field {size}x{size}, VE sigma_max={config.model.sigma_max}, '
                 f'alpha={config.sampling.pds.alpha}', fontsize=9)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png')
    plt.close(fig)
    outputs.write_bytes(path, buf.getvalue())
