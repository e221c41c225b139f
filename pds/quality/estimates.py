"""Sample quality against the exact target: the Frechet distance of a sampler's output to the
data distribution (:mod:`pds.analytic.targets`), by one of two estimates
(``bench.estimate``, ``tune.estimate``; ``auto``: the first that applies):

- ``population``: with the exact score of a target whose Fourier modes are independent
  Gaussians and a Fourier-diagonal preconditioner (no space mask), every step is affine per
  mode, so the output's per-mode moments propagate exactly (``pds.analytic.moments``) and the
  population Frechet distance has no sampling noise;
- ``sampled``: ``num`` samples drawn in rounds (:mod:`pds.experiment.rounds`), the unbiased FD
  (``FourierMoments.unbiased_frechet_distance``) with its standard error and the plug-in
  statistic beside it; on the mixture the FD is to the Gaussian with its exact per-mode mean
  and variance (``target_moments``), and the mixture weights the samples recover
  (``mixture_report``) come with it.

A cell is one (method, iteration count); :class:`Experiments` shares the score model and the
PDS masks between cells. The reference line is the expected FD of 50,000 exact samples
(:func:`floor_50k`): what an FID-style 50k evaluation can resolve. ``--mode=bench`` and
``--mode=tune`` measure with these functions.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import time

import numpy as np

from pds.analytic.fd import BANDS, FourierMoments, expected_floor
from pds.analytic.moments import check_config, population_moments
from pds.experiment.assemble import (
    Experiment,
    experiment_from_config,
    prior_moments,
    stats_images,
)
from pds.experiment.rounds import sample_rounds
from pds.method import precondition
from pds.method.precondition import Identity
from pds.runtime import distributed
from pds.runtime.errors import ConfigError
from pds.sampling.grid import sampling_schedule
from pds.sampling.solver import solver_from_config

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


def methods(config, estimate: str) -> list[Method]:
    """The curves of the bench: the baseline and PDS at ``sampling.pds.alpha`` (sampled), or
    the baseline, PDS at every ``bench.alphas`` in the reference predictor form and PDS at
    ``sampling.pds.alpha`` in the invariant form (population)."""
    alpha = float(config.sampling.pds.alpha)
    if estimate == 'sampled':
        return [Method(None), Method(alpha, config.sampling.pds.predictor_form)]
    alphas = [float(a) for a in config.bench.alphas]
    if any(a <= 1 for a in alphas):
        raise ConfigError('bench.alphas', tuple(config.bench.alphas), 'values > 1')
    return [Method(None), *(Method(a) for a in alphas), Method(alpha, 'invariant')]


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
        mean, spectrum = prior_moments(cfg, exp.target)
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

def floor_50k(exp: Experiment) -> float:
    """The expected FD of 50,000 exact samples of ``exp``'s target (``fd.expected_floor``)."""
    h, w, _ = exp.image_shape
    return expected_floor(exp.target.target_moments(h, w)[1])


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
    h, w, _ = exp.image_shape
    mean, spectrum = exp.target.target_moments(h, w)
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
