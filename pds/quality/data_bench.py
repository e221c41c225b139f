"""The sampler comparison on a network trained on real data (``--mode=bench`` with
``bench.samplers`` on a dataset that is not an exact target): quality against NFE measured
without downloads, each number with its standard error beside its data floor.

Cells are the samplers' ladders of :mod:`pds.quality.samplers` (NFE budgets, tolerances).
Every cell draws ``bench.num_samples`` samples in rounds (:mod:`pds.experiment.rounds`:
sharded over devices and hosts, sample i a function of the seed and i only, so every
sampler starts from the same white draws) and is stored under ``bench/cells/`` the moment it
is done; a rerun reuses every stored cell whose settings match, so a killed bench redoes at
most the cell in flight.

Metrics per cell (on the samples clipped to the data range, as images are saved):

- ``swd``: the sliced Wasserstein distance x 1e3 of Laplacian-pyramid patch descriptors
  (:func:`evaluation.swd.swd`, Karras et al. 2018, arXiv:1710.10196) to reference set A,
  each set standardised by its own channel statistics as in the paper (standardising both
  by A's made the SE of 128 patches 4 times larger: which photographs a small set draws
  moves its colours), with its standard error; the Fourier FD below carries the colour and
  contrast errors. Two sets of one distribution score above
  0: the **data floor** is A against B (:mod:`pds.quality.data_reference`), at the same n;
- ``fd``: the unbiased Fourier-mode Frechet distance (second-order statistics, data units^2)
  to the training images' moments, +- its SE; the floor is B's;
- ``swd_converged``: SWD to the network's own converged distribution (the reference sampler,
  no preconditioner, at ``bench.converged_steps`` iterations), when that is set;
- ``fid``, ``kid``: FID and KID with the FID Inception when ``eval.ref_stats`` is set (and
  ``eval.inception_weights`` exists: a missing file is one line before any sampling), as
  ``--mode=eval`` computes them (:mod:`pds.quality.inception`; biased at small n);
- ``error``: for deterministic samplers starting from ``bench.ode_prior``, the root mean
  square difference per pixel from the converged ODE solution of the same x_T (dopri5 at
  ``bench.ode_reference_rtol``), its mean +- SE over samples.

"At the floor" means within 2 combined SE of it: the report gives, per sampler and metric,
the smallest NFE whose value minus the floor is at most 2 sqrt(SE^2 + SE_floor^2). Rows
also list the best Gaussian model of the data (a stationary field with the images'
cross-channel spectrum, sampled exactly) and, for the converged samples, the memorisation
check (nearest-neighbour distances to the training images against held-out images').
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import os
import re
import zipfile

import numpy as np

from evaluation.swd import swd
from pds.experiment.rounds import count_rounds, sample_rounds
from pds.quality import data_reference, figures, samplers
from pds.quality.estimates import Experiments
from pds.quality.report import number
from pds.runtime import distributed
from pds.runtime.errors import ConfigError
from pds.sampling.solver import solver_from_config
from pds.storage import outputs, replace

FILES = ('samplers.csv', 'samplers.md', 'samplers.png', 'references.json')
CELLS = 'cells'
SWD_SEED = 1  # descriptor positions and directions: common to every cell (same n)
CONVERGED, ODE_REFERENCE = 'converged', 'ode_reference'


def _count(config, field: str, low: int) -> int:
    value = config.bench.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f'bench.{field}', value, f'an integer >= {low}')
    return value


def reference_configs(config) -> dict[str, object]:
    """The converged runs: ``converged`` (the reference sampler of the config without a
    preconditioner at ``bench.converged_steps`` iterations) and ``ode_reference`` (dopri5 at
    ``bench.ode_reference_rtol`` from ``bench.ode_prior``); a 0 setting leaves it out."""
    out = {}
    steps = _count(config, 'converged_steps', 0)
    if steps:
        cfg = copy.deepcopy(config)
        cfg.sampling.update(method='pc', precondition='none', steps=steps)
        cfg.sampling.pds.tuned = ''
        out[CONVERGED] = cfg
    rtol = config.bench.get('ode_reference_rtol', 0.0)
    if not isinstance(rtol, int | float) or isinstance(rtol, bool) or not 0 <= rtol < 1:
        raise ConfigError('bench.ode_reference_rtol', rtol, 'a number in [0, 1) (0: none)')
    if rtol:
        _, cfg = samplers.cell_configs(config, 'dopri5', [1], [float(rtol)], [0.1])[0]
        out[ODE_REFERENCE] = cfg
    return out


def fingerprint(cfg, num: int, checkpoint: dict | None) -> str:
    """What a stored cell's samples depend on: the sampling settings, model, data shape,
    seed, sample count and checkpoint."""
    sampling = cfg.sampling.to_dict()
    if sampling.get('precondition') == 'none':  # then the PDS block does not enter
        sampling.pop('pds', None)
    parts = {'sampling': sampling, 'model': cfg.model.to_dict(),
             'data': [cfg.data.image_size, cfg.data.num_channels, bool(cfg.data.centered)],
             'seed': int(cfg.seed), 'num': int(num),
             'checkpoint': [(checkpoint or {}).get('path'), (checkpoint or {}).get('step')]}
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cell_path(workdir: str, sampler: str, rung: str) -> str:
    return os.path.join(workdir, 'bench', CELLS,
                        re.sub(r'[^A-Za-z0-9_.-]', '', f'{sampler}__{rung}') + '.npz')


def read_cell(path: str, stamp: str) -> dict | None:
    """The stored cell at ``path`` if its fingerprint is ``stamp`` (else None: redo it)."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f['fingerprint']) != stamp:
                return None
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # a damaged file: redo the cell (it is written atomically, so rare)


def draw_cell(experiments: Experiments, cfg, num: int, batch: int, path: str, desc: str
              ) -> dict:
    """The cell's samples (stored, or drawn now on every process and stored by process 0):
    {'samples' (num, H, W, C) float32 in global order, 'nfe' (num,), 'seconds'}."""
    exp = experiments.for_config(cfg)
    stamp = fingerprint(cfg, num, exp.checkpoint)
    found = read_cell(path, stamp)
    have = distributed.gather(np.int64(found is not None))
    if int(np.min(have)):
        return found
    index, rows, nfe = [], [], []

    def keep(r):
        index.append(r.index)
        rows.append(r.rows)
        nfe.append(r.nfe)

    res = sample_rounds(exp, solver_from_config(cfg, exp.sde), cfg, num, batch, keep, desc=desc)
    order = np.argsort(distributed.gather_rows(np.concatenate(index)), kind='stable')
    cell = {'samples': distributed.gather_rows(np.concatenate(rows))[order],
            'nfe': distributed.gather_rows(np.concatenate(nfe))[order],
            'seconds': np.float64(res.sampling_seconds + res.compile_seconds),
            'fingerprint': np.array(stamp)}
    if distributed.is_main():
        outputs.write_npz(path, **cell)
    return cell


def clipped(x: np.ndarray, config) -> np.ndarray:
    """Samples in [0, 1] data units, clipped as saved images are."""
    from pds.data.pipelines import unscale

    return np.clip(unscale(np.asarray(x, np.float32), config.data.centered), 0.0, 1.0)


class Measure:
    """The metrics of a cell against the references (module docstring)."""

    def __init__(self, config, num: int):
        from pds.data.pipelines import load_images

        self.config = config
        self.a, self.b = data_reference.reference_sets(config, num)
        images = load_images(config, _count(config, 'moment_images', 2), 'train')
        self.moments = data_reference.data_moments(images)
        self.training = images[:_count(config, 'memorisation_images', 1)]
        self.converged: np.ndarray | None = None
        self.ode: np.ndarray | None = None
        self.inception = None
        if config.eval.get('ref_stats', ''):  # FID and KID where the weights exist
            from pds.quality import inception

            inception.check_eval_fields(config)
            self.inception = (inception.inception_params(config)[0],
                              inception.load_reference(config.eval.ref_stats))

    def swd(self, x: np.ndarray, reference: np.ndarray | None = None) -> tuple[float, float]:
        r = swd(self.a if reference is None else reference, x, seed=SWD_SEED)
        return r.value, r.se

    def metrics(self, samples: np.ndarray) -> dict:
        x = clipped(samples, self.config)
        value, se = self.swd(x)
        out = {'swd': value, 'swd_se': se, **data_reference.fourier_fd(x, self.moments)}
        mem = data_reference.memorisation(x, self.a, self.training)
        out['nn_median'] = mem['samples']['q50']
        out['nearer_than_held_out_q1'] = mem['samples_below_held_out_q1']
        if self.converged is not None:
            out['swd_converged'], out['swd_converged_se'] = self.swd(x, self.converged)
        if self.inception is not None:
            from pds.quality import inception

            params, ref = self.inception
            images = np.round(255.0 * x).astype(np.uint8)
            feats = inception.image_features(params, images,
                                             int(self.config.eval.inception_batch_size))
            scored = inception.score(feats['pool_3'], feats['logits'], ref, self.config)
            out['fid'] = scored['fid']
            out['kid'] = scored['kid']['mean'] if scored['kid'] else None
        return out

    def error(self, samples: np.ndarray) -> tuple[float, float]:
        """Mean +- SE over samples of the RMS per-pixel difference from the ODE reference."""
        per = np.sqrt(np.mean((np.asarray(samples, np.float64) - self.ode) ** 2,
                              axis=(1, 2, 3)))
        return float(per.mean()), float(per.std(ddof=1) / np.sqrt(len(per)))

    def references(self, seed: int) -> dict:
        """The floor (B), the Gaussian model and the converged samples, as metric rows."""
        rows = {'data floor (reference B)': self.metrics(self.b)}
        model = data_reference.gaussian_model_samples(self.moments, len(self.a), seed)
        rows['Gaussian model of the data'] = self.metrics(model)
        if self.converged is not None:
            rows['converged sampler'] = self.metrics(self.converged)
        return rows


def _deterministic(name: str) -> bool:
    spec = samplers.presets()[name].spec
    return spec.kind in ('ODE', 'adaptive ODE') and samplers.presets()[name].ode_prior


def run(config, workdir: str, overwrite: bool = False) -> list[dict]:
    """The data bench (module docstring); returns the cell rows."""
    names, budgets, rtols, eps_rels = samplers.settings(config)
    num, batch = config.bench.num_samples, config.bench.batch_size
    count_rounds(num, batch)
    if num < 20:
        raise ConfigError('bench.num_samples', num, 'at least 20 (the SWD standard error '
                          'needs 10 groups of 2 images)')
    ladders = {n: samplers.cell_configs(config, n, budgets, rtols, eps_rels) for n in names}
    refs = reference_configs(config)
    replace.check_not_interrupted(workdir)
    experiments = Experiments(config, workdir)
    for cfg in [c for n in names for _, c in ladders[n]] + list(refs.values()):
        solver_from_config(cfg, experiments.for_config(cfg).sde)
    paths = {f: os.path.join(workdir, 'bench', f) for f in FILES}
    replace.claim(list(paths.values()), overwrite)

    main = distributed.is_main()
    say = print if main else (lambda *a, **k: None)
    measure = Measure(config, num)
    drawn = {}
    for key, cfg in refs.items():
        drawn[key] = draw_cell(experiments, cfg, num, batch,
                               cell_path(workdir, key, 'reference'), key)
    if main:
        if CONVERGED in drawn:
            measure.converged = clipped(drawn[CONVERGED]['samples'], config)
        if ODE_REFERENCE in drawn:
            measure.ode = np.asarray(drawn[ODE_REFERENCE]['samples'], np.float64)
        references = measure.references(int(config.seed))
        for label, m in references.items():
            say(f'{label:>28}: SWD {m["swd"]:8.2f} +- {m["swd_se"]:.2f}   FD '
                f'{m["fd"]:.4g} +- {m["fd_se"]:.2g}', flush=True)
    rows = []
    for name in names:
        for rung, cfg in ladders[name]:
            cell = draw_cell(experiments, cfg, num, batch, cell_path(workdir, name, rung),
                             f'{name} {rung}')
            if not main:
                continue
            nfe = cell['nfe']
            row = {'sampler': name, 'rung': rung, 'nfe': float(nfe.mean()),
                   'nfe_max': int(nfe.max()), 'seconds': float(cell['seconds']),
                   **measure.metrics(cell['samples'])}
            if measure.ode is not None and _deterministic(name):
                row['error'], row['error_se'] = measure.error(cell['samples'])
            rows.append(row)
            say(f'{name:>16} {rung:>14}  NFE {row["nfe"]:>7.4g}  SWD {row["swd"]:8.2f} +- '
                f'{row["swd_se"]:.2f}  FD {row["fd"]:.4g} +- {row["fd_se"]:.2g}', flush=True)
    if main:
        extra = {'num_samples': num, 'references': references,
                 'checkpoint': experiments.base.checkpoint,
                 'converged_steps': config.bench.converged_steps,
                 'ode_reference_rtol': config.bench.ode_reference_rtol}
        if CONVERGED in drawn or rows:  # the converged samples, else the last cell's
            last = (measure.converged if CONVERGED in drawn
                    else clipped(cell['samples'], config))
            extra['memorisation'] = data_reference.memorisation(last, measure.a,
                                                                measure.training)
            extra['memorisation']['of'] = ('converged sampler' if CONVERGED in drawn
                                           else f"{rows[-1]['sampler']} {rows[-1]['rung']}")
        with replace.replacing(workdir, list(paths.values()), overwrite, tag=None):
            outputs.write_text(paths['samplers.csv'], to_csv(rows))
            outputs.write_json(paths['references.json'], extra)
            outputs.write_text(paths['samplers.md'], to_markdown(rows, extra, config))
            plot(paths['samplers.png'], rows, references, config)
    return rows


COLUMNS = ('sampler', 'rung', 'nfe', 'nfe_max', 'swd', 'swd_se', 'fd', 'fd_se', 'fd_plugin',
           'swd_converged', 'swd_converged_se', 'error', 'error_se', 'fid', 'kid', 'nn_median',
           'nearer_than_held_out_q1', 'seconds')
METRICS = {'swd': 'SWD x 1e3 to reference A', 'fd': 'Fourier-mode FD to the data moments'}
FLOOR = 'data floor (reference B)'


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, '') for k in COLUMNS})
    return buf.getvalue()


def at_floor(row: dict, floor: dict, metric: str) -> bool:
    """The cell's ``metric`` is within 2 combined SE of (or below) the floor's."""
    se = np.hypot(row[f'{metric}_se'], floor[f'{metric}_se'])
    return row[metric] - floor[metric] <= 2.0 * se


def nfe_to_floor(rows: list[dict], floor: dict, metric: str) -> dict[str, float | None]:
    """Per sampler, the smallest mean NFE of a cell at the floor (None: none is)."""
    out = {}
    for name in dict.fromkeys(r['sampler'] for r in rows):
        hits = [r['nfe'] for r in rows if r['sampler'] == name and at_floor(r, floor, metric)]
        out[name] = min(hits) if hits else None
    return out


def ranking(rows: list[dict], metric: str = 'swd') -> list[tuple[str, dict, bool]]:
    """Each sampler's best cell by ``metric``, best first, with whether it is worse than the
    best by more than 2 combined SE (False: not resolved from the best)."""
    best = {}
    for r in rows:
        if r['sampler'] not in best or r[metric] < best[r['sampler']][metric]:
            best[r['sampler']] = r
    order = sorted(best.values(), key=lambda r: r[metric])
    top = order[0]
    return [(r['sampler'], r, bool(r[metric] - top[metric]
                                   > 2.0 * np.hypot(r[f'{metric}_se'], top[f'{metric}_se'])))
            for r in order]


def _cell(r: dict, metric: str) -> str:
    return f'{number(r[metric])} +- {number(r[f"{metric}_se"])}'


def grid_table(rows: list[dict], floor: dict, budgets: list[int], metric: str = 'swd'
               ) -> list[str]:
    """``metric`` +- SE of the fixed-step samplers, one column per NFE budget (a cell under
    the smallest budget that holds its NFE; bold: at the floor), as markdown lines."""
    budgets = sorted(budgets)
    fixed = [r for r in rows if not samplers.presets()[r['sampler']].tolerance]
    lines = [f'{METRICS[metric]} (+- 1 SE; bold: at the floor '
             f'{_cell(floor, metric)}) per NFE budget:', '',
             '| sampler | ' + ' | '.join(str(b) for b in budgets) + ' |',
             '|---|' + '---:|' * len(budgets)]
    for name in dict.fromkeys(r['sampler'] for r in fixed):
        cells = {min(b for b in budgets if b >= r['nfe']): r for r in fixed
                 if r['sampler'] == name}
        text = []
        for b in budgets:
            r = cells.get(b)
            t = '' if r is None else _cell(r, metric)
            text.append(f'**{t}**' if r is not None and at_floor(r, floor, metric) else t)
        lines.append(f'| {name} | ' + ' | '.join(text) + ' |')
    return lines


def to_markdown(rows: list[dict], extra: dict, config) -> str:
    refs = extra['references']
    floor = refs[FLOOR]
    size = config.data.image_size
    ck = extra.get('checkpoint') or {}
    lines = [f'Samplers on {config.data.dataset} {size}x{size} ({config.model.name}, '
             f'checkpoint step {ck.get("step")}), {extra["num_samples"]} samples per cell, '
             'every sampler from the same white draws. Values +- 1 SE; "at the floor": within '
             '2 combined SE of the data floor (reference A against B at the same n).', '']
    lines += ['| reference | SWD x 1e3 | Fourier FD |', '|---|---:|---:|']
    lines += [f'| {k} | {_cell(m, "swd")} | {_cell(m, "fd")} |' for k, m in refs.items()]
    for metric in METRICS:
        lines += ['', *grid_table(rows, floor, list(config.bench.nfe), metric)]
    for metric, title in METRICS.items():
        names = list(dict.fromkeys(r['sampler'] for r in rows))
        reach = nfe_to_floor(rows, floor, metric)
        lines += ['', f'{title} (lower is better; bold: at the floor). Cells: mean NFE -> value.',
                  '', '| sampler | NFE at the floor | cells |', '|---|---:|---|']
        for name in names:
            cells = []
            for r in (r for r in rows if r['sampler'] == name):
                text = f"{r['nfe']:.4g} -> {_cell(r, metric)}"
                cells.append(f'**{text}**' if at_floor(r, floor, metric) else text)
            hit = reach[name]
            lines.append(f"| {name} | {'-' if hit is None else f'{hit:.4g}'} | "
                         + '; '.join(cells) + ' |')
    lines += ['', "Ranking by each sampler's best SWD cell (a sampler is ranked below the best "
              'only where it is worse by more than 2 combined SE):', '']
    for name, r, resolved in ranking(rows):
        tag = 'worse than the best' if resolved else 'not resolved from the best'
        lines.append(f"- {name}: {_cell(r, 'swd')} at NFE {r['nfe']:.4g} ({tag})")
    if any('swd_converged' in r for r in rows):
        lines += ['', f"SWD x 1e3 to the network's converged samples (pc, "
                  f"{extra['converged_steps']} iterations): what each sampler still misses of "
                  "the network's own distribution.", '']
        for name in dict.fromkeys(r['sampler'] for r in rows):
            lines.append(f'- {name}: ' + '; '.join(
                f"{r['nfe']:.4g} -> {_cell(r, 'swd_converged')}" for r in rows
                if r['sampler'] == name))
    if any('error' in r for r in rows):
        lines += ['', 'Deterministic samplers: RMS per-pixel difference from the converged ODE '
                  f"solution of the same x_T (dopri5, rtol {extra['ode_reference_rtol']:g}), "
                  'mean +- SE over samples:', '']
        for name in dict.fromkeys(r['sampler'] for r in rows if 'error' in r):
            lines.append(f'- {name}: ' + '; '.join(
                f"{r['nfe']:.4g} -> {r['error']:.3g} +- {r['error_se']:.1g}" for r in rows
                if r['sampler'] == name))
    if any(r.get('fid') is not None for r in rows):
        lines += ['', 'FID (and KID) against eval.ref_stats with the FID Inception, per cell '
                  '(biased upward at this sample count: compare cells of one n only):', '']
        for name in dict.fromkeys(r['sampler'] for r in rows):
            lines.append(f'- {name}: ' + '; '.join(
                f"{r['nfe']:.4g} -> {number(r['fid'])}" + (
                    f" (KID {number(r['kid'])})" if r.get('kid') is not None else '')
                for r in rows if r['sampler'] == name))
    mem = extra.get('memorisation')
    if mem:
        s, h = mem['samples'], mem['held_out']
        lines += ['', f"Memorisation ({mem['of']}: {mem['textured_samples']} samples and "
                  f"{mem['textured_held_out']} held-out patches with a pixel SD of at least "
                  f"{mem['min_std']:g}; nearest of {mem['training_images']} "
                  'training images and mirrors, RMS per pixel): samples median '
                  f"{s['q50']:.4f}, 1% {s['q1']:.4f}; held-out images median {h['q50']:.4f}, "
                  f"1% {h['q1']:.4f}; samples nearer than the held-out 1% quantile: "
                  f"{100 * mem['samples_below_held_out_q1']:.1f}% (about 1% if none is a copy)."]
    return '\n'.join(lines) + '\n'


def plot(path: str, rows: list[dict], refs: dict, config) -> None:
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12.0, 4.8), dpi=110)
    names = list(dict.fromkeys(r['sampler'] for r in rows))
    for ax, (metric, title) in zip(axes, METRICS.items()):
        for i, name in enumerate(names):
            mine = sorted((r for r in rows if r['sampler'] == name), key=lambda r: r['nfe'])
            nfe = [r['nfe'] for r in mine]
            val = np.array([r[metric] for r in mine])
            se = np.array([r[f'{metric}_se'] for r in mine])
            preset = samplers.presets()[name]
            style = ':' if preset.tolerance else ('--' if preset.ode_prior else '-')
            ax.errorbar(nfe, val, yerr=se, fmt=style, marker='os^vD<>ph*X'[i % 11], ms=4,
                        capsize=2, lw=1, label=name)
        floor = refs[FLOOR]
        ax.axhspan(floor[metric] - 2 * floor[f'{metric}_se'],
                   floor[metric] + 2 * floor[f'{metric}_se'], color='k', alpha=0.12,
                   label='data floor +- 2 SE')
        for label, ls in (('Gaussian model of the data', '-.'), ('converged sampler', ':')):
            if label in refs:
                ax.axhline(refs[label][metric], color='k', lw=1, ls=ls, label=label)
        ax.set(xscale='log', yscale='symlog' if metric == 'fd' else 'log',
               xlabel='NFE (score evaluations per sample)', ylabel=title)
        ax.grid(True, which='both', alpha=0.3)
    size = config.data.image_size
    axes[0].set_title(f'{config.data.dataset} {size}x{size}: lower is better (+- 1 SE)',
                      fontsize=9)
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    figures.save(fig, path)


class DataObjective:
    """``--mode=tune``'s objective on real data: the metric ``tune.metric`` ('fd' or 'swd')
    of the configured PC sampler with PDS at alpha (None: the baseline) at N iterations,
    ``tune.num_samples`` samples per cell, each cell stored under ``tune/cells/`` and reused
    on resume. Every process computes the same values (it holds every sample), so the
    search takes the same path on every process."""

    estimate = 'sampled'
    METRICS = ('fd', 'swd')

    def __init__(self, config, workdir: str, num: int, batch: int):
        from pds.runtime.errors import check_choice

        self.metric = config.tune.get('metric', 'fd')
        check_choice('tune.metric', self.metric, self.METRICS)
        if num < 20:
            raise ConfigError('tune.num_samples', num, 'at least 20 on real data (the SWD '
                              'standard error needs 10 groups of 2 images)')
        self.config, self.workdir, self.num, self.batch = config, workdir, num, batch
        self.form = config.sampling.pds.get('predictor_form', 'reference')
        self.experiments = Experiments(config, workdir)
        self.measure = Measure(config, num)
        self.rows: dict[tuple[int, float | None], dict] = {}
        self.floor = self.measure.metrics(self.measure.b)

    @property
    def floor_value(self) -> float:
        return float(self.floor[self.metric])

    def __call__(self, n: int, alpha: float | None) -> float:
        from pds.quality.estimates import Method

        key = (n, alpha)
        if key not in self.rows:
            method = Method(alpha, self.form)
            cfg = method.configure(self.config)
            cfg.sampling.steps = n
            rung = f'N={n}'
            cell = draw_cell(self.experiments, cfg, self.num, self.batch,
                             os.path.join(self.workdir, 'tune', CELLS, os.path.basename(
                                 cell_path('', method.label.replace(' ', '_'), rung))),
                             f'{method.label} {rung}')
            m = self.measure.metrics(cell['samples'])
            self.rows[key] = {'iterations': n, 'nfe': int(cell['nfe'].max()),
                              'method': method.label, 'alpha': alpha,
                              'predictor_form': method.form if alpha is not None else '',
                              'estimate': 'sampled', 'frechet_distance': m[self.metric],
                              'frechet_distance_se': m[f'{self.metric}_se'],
                              'seconds': float(cell['seconds'])}
        return float(self.rows[key]['frechet_distance'])

    def cells(self, n: int) -> list[dict]:
        from pds.quality.alpha_search import order

        return [r for (m, _), r in sorted(self.rows.items(), key=order) if m == n]


def agreement(rows_a: list[dict], rows_b: list[dict], metric: str) -> dict:
    """How two bench runs of the same cells (e.g. two seeds) agree on ``metric``: per cell
    z = (a - b) / sqrt(SE_a^2 + SE_b^2); the fraction of cells within 3 and within 4, and the
    largest |z|. Cells are matched by (sampler, rung)."""
    b = {(r['sampler'], r['rung']): r for r in rows_b}
    z = []
    for r in rows_a:
        other = b.get((r['sampler'], r['rung']))
        if other is not None:
            se = np.hypot(float(r[f'{metric}_se']), float(other[f'{metric}_se']))
            z.append((float(r[metric]) - float(other[metric])) / se)
    z = np.abs(np.asarray(z))
    return {'cells': len(z), 'within_3': float(np.mean(z <= 3)), 'within_4': float(
        np.mean(z <= 4)), 'max_abs_z': float(z.max()) if len(z) else None}


def main(argv: list[str] | None = None) -> int:
    """``python -m pds.quality.data_bench A/bench/samplers.csv B/bench/samplers.csv``: the
    agreement of two runs per metric (:func:`agreement`)."""
    import sys

    paths = sys.argv[1:] if argv is None else argv
    if len(paths) != 2:
        print('usage: python -m pds.quality.data_bench RUN_A/samplers.csv RUN_B/samplers.csv',
              file=sys.stderr)
        return 2
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(list(csv.DictReader(f)))
    for metric in METRICS:
        a = agreement(*runs, metric)
        print(f"{metric}: {a['cells']} cells, {100 * a['within_3']:.0f}% within 3 combined SE, "
              f"{100 * a['within_4']:.0f}% within 4, largest |z| {a['max_abs_z']:.2f}")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
