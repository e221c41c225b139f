"""A likelihood run: per-example bits/dim of a data split under the model, in resumable rounds.

Examples: positions p = 0 .. N - 1 (N = ``eval.num_samples``) of the split's evaluation
stream (:func:`pds.data.pipelines.get_batches` with ``repeat``: data example p mod n of a
split of n examples, in stored order for 'test', the seed's permutation for 'train'; image
data dequantised with noise drawn from (seed, p), so a second pass over the split sees fresh
noise, as score_sde's five passes over the test set; no flips). Round k holds positions
[k B, (k + 1) B), B = ``eval.batch_size``, and depends only on the settings, the seed and k,
never on the device or process count; example p's Hutchinson probes come from its own key.

Outputs, each written atomically (``<name>`` is 'exact' for an exact score, else the
checkpoint step)::

    <workdir>/likelihood/<name>/round_<k>.npz   per example of round k: index, bpd,
                                                nats_per_dim, logp, delta, prior_logp,
                                                nfe, steps; round, fingerprint; with a known
                                                data distribution also closed_form_logp
                                                (log p_eps(x)) and prior_mismatch (m)
    <workdir>/likelihood/examples_<name>.npz    the same over every round, in example order
    <workdir>/likelihood/report_<name>.json     means and standard errors (and .md)

A restarted run keeps the round files of the same settings (fingerprint) and computes only
the missing rounds; a round of other settings is a ConfigError (``--overwrite`` starts over),
a damaged one is reported, removed and computed again.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import glob
import hashlib
import json
import math
import os
import time

import jax
import numpy as np
from absl import logging

from pds.analytic.gaussian_field import GaussianField
from pds.analytic.targets import experiment_target, has_exact_score
from pds.experiment.assemble import (
    PRIORS,
    data_moments_for_prior,
    image_shape,
    score_model_from_config,
)
from pds.likelihood import closed_form, units
from pds.likelihood.divergence import Divergence
from pds.likelihood.ode import (
    METHODS,
    AdaptiveLikelihood,
    FixedStepLikelihood,
    ForwardGrid,
)
from pds.likelihood.priors import Prior, make_prior
from pds.likelihood.program import LikelihoodResult, build_likelihood
from pds.method.sde import SDE, sde_from_config
from pds.runtime import distributed
from pds.runtime.errors import ConfigError, RunError, check_choice
from pds.runtime.mesh import batch_sharded, check_batch, data_mesh, replicate
from pds.sampling.adaptive import MAX_STEP_LIMIT, number_in
from pds.sampling.grid import GRIDS, noise_level_grid
from pds.storage import outputs, readers

SPLITS = ('train', 'test')
EXACT = 'exact'
MAX_FIXED_STEPS = 100_000
ROUND_KEYS = ('index', 'bpd', 'nats_per_dim', 'logp', 'delta', 'prior_logp', 'nfe', 'steps')
CLOSED_KEYS = ('closed_form_logp', 'prior_mismatch')


# ------------------------------------------------------------------------------------------
# Settings


@dataclasses.dataclass
class Setup:
    """Everything a likelihood run needs, from the config."""

    config: object  # the data settings the run reads (dequantisation on for image data)
    sde: SDE
    score_builder: object
    variables: object
    target: object | None  # the data distribution when known exactly
    prior: Prior
    solver: AdaptiveLikelihood | FixedStepLikelihood
    split: str
    num_examples: int
    batch_size: int
    name: str  # 'exact' or the checkpoint step
    checkpoint: dict | None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return image_shape(self.config)

    @property
    def dims(self) -> int:
        return math.prod(self.image_shape)

    @property
    def rounds(self) -> int:
        return self.num_examples // self.batch_size


def _int_field(field: str, value, low: int, high: int, what: str = '') -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(field, value, f'an integer in [{low}, {high}]{what}')
    return int(value)


def check_split(value) -> str:
    """``eval.bpd_dataset``: 'train' or 'test' (score_sde's names)."""
    if value not in SPLITS:
        raise ConfigError('eval.bpd_dataset', value,
                          "'train' or 'test' (the split whose bits/dim are computed)")
    return value


def divergence_from_config(config) -> Divergence:
    ev = config.eval
    return Divergence(ev.get('bpd_num_probes', 1), ev.get('bpd_probe', 'rademacher'))


def solver_from_config(config, sde: SDE) -> AdaptiveLikelihood | FixedStepLikelihood:
    """The ODE solver of ``eval.bpd_solver`` with its fields (ConfigError naming them)."""
    ev = config.eval
    divergence = divergence_from_config(config)
    method = ev.get('bpd_solver', 'dopri5')
    check_choice('eval.bpd_solver', method, METHODS)
    eps = number_in('eval.bpd_eps', ev.get('bpd_eps', 1e-5), 0.0, float(sde.T),
                    high_open=True)
    if method == 'dopri5':
        return AdaptiveLikelihood(
            divergence, eps, float(sde.T),
            rtol=number_in('eval.bpd_rtol', ev.get('bpd_rtol', 1e-5), 0.0, 1.0,
                           high_open=True),
            atol=number_in('eval.bpd_atol', ev.get('bpd_atol', 1e-5), 0.0, 1e3),
            step_limit=_int_field('eval.bpd_max_steps', ev.get('bpd_max_steps', 10000), 1,
                                  MAX_STEP_LIMIT, ' (attempted steps per example)'))
    steps = _int_field('eval.bpd_steps', ev.get('bpd_steps', 100), 1, MAX_FIXED_STEPS)
    kind = ev.get('bpd_grid', 'logsnr')
    check_choice('eval.bpd_grid', kind, GRIDS)
    grid = noise_level_grid(sde, steps + 1, eps, kind, float(config.sampling.get('rho', 7.0)),
                            sde.T)
    return FixedStepLikelihood(divergence, ForwardGrid(grid.t[::-1].copy()), method)


def data_config(config):
    """The config the data are read with: image data uniformly dequantised and never
    flipped (score_sde's bits/dim datasets); continuous data as they are."""
    out = copy.deepcopy(config)
    out.data.random_flip = False
    if units.dequantised(config):
        out.data.uniform_dequantization = True
    return out


def setup_from_config(config, workdir: str | None) -> Setup:
    """Check every field, then assemble the model (ConfigError before anything runs)."""
    split = check_split(config.eval.get('bpd_dataset', 'test'))
    b = config.eval.batch_size
    n = config.eval.num_samples
    if isinstance(b, bool) or not isinstance(b, int) or b < 1:
        raise ConfigError('eval.batch_size', b, 'an integer >= 1')
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n % b:
        raise ConfigError('eval.num_samples', n, f'a positive multiple of eval.batch_size={b} '
                          '(the likelihood runs whole rounds)')
    check_batch('eval.batch_size', b, data_mesh())
    sde = sde_from_config(config)
    solver = solver_from_config(config, sde)
    prior_name = config.sampling.get('prior', 'score_sde')
    check_choice('sampling.prior', prior_name, PRIORS)
    builder, variables, target, checkpoint = score_model_from_config(config, workdir)
    if target is None:
        target = experiment_target(config)
    mean, spectrum = data_moments_for_prior(config, target, prior_name)
    prior = make_prior(prior_name, sde, mean, spectrum)
    step = (checkpoint or {}).get('step')
    name = EXACT if has_exact_score(config) else ('init' if step is None else str(step))
    return Setup(data_config(config), sde, builder, variables, target, prior, solver, split, n,
                 b, name, checkpoint)


def fingerprint(setup: Setup) -> str:
    """SHA-256 of everything that determines a round file's contents."""
    config = setup.config
    blob = {'model': config.model.to_dict(), 'data': config.data.to_dict(),
            'eval': {k: v for k, v in config.eval.to_dict().items() if k.startswith('bpd_')},
            'prior': setup.prior.name, 'prior_stats': config.sampling.get('prior_stats', ''),
            'sde': config.training.sde, 'continuous': config.training.continuous,
            'seed': config.seed, 'batch_size': setup.batch_size, 'checkpoint': setup.name,
            'solver': setup.solver.summary()}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------------------------------
# Rounds


def output_paths(workdir: str, name: str) -> tuple[str, str, str, str]:
    """(round folder, examples .npz, report .json, report .md) of ``name``."""
    base = os.path.join(workdir, 'likelihood')
    return (os.path.join(base, name), os.path.join(base, f'examples_{name}.npz'),
            os.path.join(base, f'report_{name}.json'), os.path.join(base, f'report_{name}.md'))


def round_path(round_dir: str, k: int) -> str:
    return os.path.join(round_dir, distributed.process_file('round', k))


def _round_specs(closed: bool) -> dict[str, readers.ArraySpec]:
    spec = {k: readers.ArraySpec(kinds='f', ndims=(1,), finite=True) for k in ROUND_KEYS}
    for k in ('index', 'nfe', 'steps'):
        spec[k] = readers.ArraySpec(kinds='iu', ndims=(1,))
    if closed:
        spec.update({k: readers.ArraySpec(kinds='f', ndims=(1,), finite=True)
                     for k in CLOSED_KEYS})
    spec['round'] = readers.ArraySpec(kinds='iu', shape=())
    spec['fingerprint'] = readers.ArraySpec(kinds='U', shape=())
    return spec


def read_round(path: str, closed: bool) -> dict:
    """A round file's arrays, checked (ConfigError naming the file when damaged)."""
    data = readers.read_npz(path, '--workdir', _round_specs(closed),
                            'a likelihood round file (per-example finite floats and integer '
                            'counts of one length, round, fingerprint)')
    if len({len(v) for v in data.values() if v.ndim}) != 1:
        raise ConfigError('--workdir', path, 'a likelihood round file with arrays of one '
                          'length')
    return data


def finished_rounds(setup: Setup, round_dir: str, fp: str) -> set[int]:
    """Rounds on disk with this fingerprint for every process; a round of other settings is
    a ConfigError, a damaged one is reported and removed (computed again)."""
    done = np.zeros(setup.rounds, bool)
    rows = setup.batch_size * jax.local_device_count() // jax.device_count()
    closed = setup.target is not None
    for k in range(setup.rounds):
        path = round_path(round_dir, k)
        if not os.path.exists(path):
            continue
        try:
            data = read_round(path, closed)
            if str(data['fingerprint']) == fp and (int(data['round']) != k
                                                   or len(data['index']) != rows):
                raise ConfigError('--workdir', path, f'round {k} with {rows} rows')
        except ConfigError as err:
            logging.warning('likelihood: round file %s is damaged (%s); removing it, round %d '
                            'is computed again', path, err.allowed, k)
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            continue
        if str(data['fingerprint']) != fp:
            raise ConfigError('--workdir', os.path.dirname(os.path.dirname(round_dir)),
                              f'likelihood rounds of the current settings ({path} was written '
                              'with other model, data, solver, seed or batch settings; pass '
                              '--overwrite to discard them)')
        done[k] = True
    everywhere = distributed.gather(done).all(axis=0)
    return {int(k) for k in np.flatnonzero(everywhere)}


def check_finite(k: int, index: np.ndarray, res: dict, setup: Setup) -> None:
    """RunError naming round k's first example whose result is not finite (every process)."""
    bad = ~np.isfinite(res['logp'])
    first = np.int64(index[bad].min()) if bad.any() else np.int64(-1)
    hits = distributed.gather(first)
    hits = hits[hits >= 0]
    if not len(hits):
        return
    example = int(hits.min())
    limit = getattr(setup.solver, 'step_limit', None)
    hint = (f'; an example that had not reached T after eval.bpd_max_steps={limit} attempted '
            'steps is NaN (raise it or loosen eval.bpd_rtol)' if limit else '')
    raise RunError(f'non-finite log-likelihood in round {k}: example {example} (nothing of '
                   f'this round was written; solver: {setup.solver.summary()}){hint}')


def round_results(setup: Setup, out: LikelihoodResult, index: np.ndarray, x: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """This process's rows of a round as host arrays, with the units and, for a known data
    distribution, the closed forms (float64)."""
    rows = {name: distributed.local_rows(getattr(out, name))[1]
            for name in ('logp', 'delta', 'prior_logp', 'nfe', 'steps', 'x_T')}
    offset = units.bpd_offset(setup.config)
    res = {'index': index.astype(np.int64),
           'bpd': units.bits_per_dim(rows['logp'], setup.dims, offset),
           'nats_per_dim': units.nats_per_dim(rows['logp'], setup.dims),
           'logp': rows['logp'].astype(np.float64), 'delta': rows['delta'].astype(np.float64),
           'prior_logp': rows['prior_logp'].astype(np.float64),
           'nfe': rows['nfe'].astype(np.int64), 'steps': rows['steps'].astype(np.int64)}
    if setup.target is not None:
        eps = float(setup.solver.summary()['eps'])
        res['closed_form_logp'] = closed_form.marginal_log_density(setup.target, setup.sde, x,
                                                                   eps)
        x_T = np.where(np.isfinite(rows['x_T']), rows['x_T'], 0.0)
        res['prior_mismatch'] = closed_form.prior_mismatch(setup.target, setup.sde,
                                                           setup.prior, x_T)
    return res


def compute_rounds(setup: Setup, round_dir: str, todo: list[int], fp: str) -> dict:
    """Compute rounds ``todo`` (ascending) and write each round's file at once."""
    timing = {'compile_seconds': 0.0, 'likelihood_seconds': 0.0}
    if not todo:
        return timing
    from pds.data.pipelines import get_batches

    mesh = data_mesh()
    program = build_likelihood(setup.sde, setup.score_builder, setup.image_shape,
                               setup.batch_size, mesh, setup.solver, setup.prior)
    variables = replicate(setup.variables, mesh)
    sharding = batch_sharded(mesh)
    timing['compile_seconds'] = program.compile(variables, sharding)
    data = get_batches(setup.config, 'train' if setup.split == 'train' else 'eval',
                       setup.batch_size, start_batch=todo[0], repeat=True)
    shape = (setup.batch_size, *setup.image_shape)
    t0 = time.perf_counter()
    for k in range(todo[0], todo[-1] + 1):
        local = next(data)
        if k not in todo:
            continue
        x = jax.make_array_from_process_local_data(sharding, local, shape)
        out = program.run(variables, x, setup.config.seed, k * setup.batch_size)
        index = distributed.local_rows(x)[0] + k * setup.batch_size
        res = round_results(setup, out, index, local)
        check_finite(k, index, res, setup)
        outputs.write_npz(round_path(round_dir, k), **res, round=np.int64(k),
                          fingerprint=np.array(fp))
        if distributed.is_main():
            logging.info('likelihood %s: round %d of %d, mean %.4f bits/dim', setup.name,
                         k + 1, setup.rounds, float(res['bpd'].mean()))
    timing['likelihood_seconds'] = time.perf_counter() - t0
    return timing


def load_rounds(setup: Setup, round_dir: str) -> dict[str, np.ndarray]:
    """Every round's per-example arrays, of every process's files (the workdir is shared, as
    for checkpoints; read directly, not gathered through JAX, which would narrow float64 to
    float32), in example order."""
    closed = setup.target is not None
    keys = ROUND_KEYS + (CLOSED_KEYS if closed else ())
    parts: dict[str, list] = {k: [] for k in keys}
    for k in range(setup.rounds):
        for name in distributed.process_files('round', k):
            data = read_round(os.path.join(round_dir, name), closed)
            for key in keys:
                parts[key].append(data[key])
    every = {key: np.concatenate(v) for key, v in parts.items()}
    order = np.argsort(every['index'], kind='stable')
    if not np.array_equal(every['index'][order], np.arange(len(order))):
        raise RuntimeError(f'{round_dir}: example indices repeat or leave gaps')
    return {key: v[order] for key, v in every.items()}


# ------------------------------------------------------------------------------------------
# The report


def mean_se(v: np.ndarray) -> dict[str, float]:
    """{'mean', 'se'}: the mean and its standard error std / sqrt(n) (ddof 1)."""
    v = np.asarray(v, np.float64)
    se = float(np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float('nan')
    return {'mean': float(np.mean(v)), 'se': se}


def report(setup: Setup, ex: dict[str, np.ndarray]) -> dict:
    """Means and standard errors of the per-example results (JSON-ready)."""
    d, ln2 = setup.dims, units.LN2
    jvps = setup.solver.divergence.jvps(d)
    out = {
        'checkpoint': setup.name, 'split': setup.split, 'num_examples': len(ex['bpd']),
        'batch_size': setup.batch_size, 'rounds': setup.rounds, 'dims': d,
        'devices': jax.device_count(), 'processes': jax.process_count(),
        'seed': setup.config.seed,
        'units': ('bits/dim of uniformly dequantised 8-bit data on [0, 256) (score_sde: '
                  f'offset log2(inverse scaler slope) + 8 = {units.bpd_offset(setup.config):g})'
                  if units.dequantised(setup.config) else
                  'bits/dim and nats/dim of the continuous data in data space (no '
                  'dequantisation, no offset)'),
        'bpd': mean_se(ex['bpd']), 'nats_per_dim': mean_se(ex['nats_per_dim']),
        'nfe': mean_se(ex['nfe']), 'nfe_max': int(ex['nfe'].max()),
        'jvps_per_nfe': jvps, 'score_passes_per_example': float(ex['nfe'].mean() * (1 + jvps)),
        'solver': setup.solver.summary(), 'prior': setup.prior.summary(),
        'sde': type(setup.sde).__name__, 'checkpoint_source': setup.checkpoint,
    }
    if setup.target is not None:
        closed = units.bits_per_dim(ex['closed_form_logp'], d, units.bpd_offset(setup.config))
        mismatch = -ex['prior_mismatch'] / (d * ln2)
        error = ex['bpd'] - closed - mismatch
        out['closed_form'] = {
            'bpd': mean_se(closed),
            'excess_bpd': mean_se(ex['bpd'] - closed),
            'prior_mismatch_bpd': mean_se(mismatch),
            'solver_error_bpd': {**mean_se(error), 'max_abs': float(np.abs(error).max())},
            'note': ('bpd = closed-form bpd of the marginal at eps + prior mismatch '
                     '-m / (D ln 2), m = log pi(x(T)) - log p_T(x(T)), + the solver and '
                     'divergence error; with a network, excess_bpd is the model\'s excess '
                     'bits over the true density'),
        }
        if isinstance(setup.target, GaussianField):
            kl = closed_form.prior_kl(setup.target, setup.sde, setup.prior,
                                      *setup.image_shape[:2])
            out['closed_form']['prior_kl'] = {'nats_per_image': kl, 'bpd': kl / (d * ln2)}
    return out


def report_markdown(rep: dict) -> str:
    """The report as a short Markdown table."""
    def cell(v: dict) -> str:
        return f"{v['mean']:.6f} +- {v['se']:.6f}"

    lines = [f"# Likelihood: {rep['checkpoint']} ({rep['split']} split, "
             f"{rep['num_examples']} examples)", '', f"Units: {rep['units']}.", '',
             '| quantity | mean +- standard error |', '| --- | --- |',
             f"| bits/dim | {cell(rep['bpd'])} |",
             f"| nats/dim | {cell(rep['nats_per_dim'])} |",
             f"| NFE per example | {rep['nfe']['mean']:.1f} +- {rep['nfe']['se']:.1f} "
             f"(max {rep['nfe_max']}; "
             f"{rep['jvps_per_nfe']} JVPs per NFE) |"]
    cf = rep.get('closed_form')
    if cf:
        lines += [f"| closed-form bits/dim (marginal at eps) | {cell(cf['bpd'])} |",
                  f"| excess bits/dim over the closed form | {cell(cf['excess_bpd'])} |",
                  f"| prior mismatch bits/dim | {cell(cf['prior_mismatch_bpd'])} |",
                  f"| ODE error bits/dim (solver and divergence estimate) | "
                  f"{cell(cf['solver_error_bpd'])} "
                  f"(max abs {cf['solver_error_bpd']['max_abs']:.2e}) |"]
        if 'prior_kl' in cf:
            kl = cf['prior_kl']
            lines.append(f"| KL(p_T, prior), closed form | {kl['nats_per_image']:.6g} "
                         f"nats/image = {kl['bpd']:.3e} bits/dim |")
    lines += ['', f"Solver: {rep['solver']}; prior: {rep['prior']}; SDE: {rep['sde']}.", '']
    return '\n'.join(lines)


def evaluate(setup: Setup, workdir: str) -> tuple[dict, dict[str, np.ndarray]]:
    """Compute the missing rounds (each written as it finishes); returns (report, per-example
    arrays in example order) on the main process, ({}, {}) on the others. The caller writes
    the report and the examples file (:func:`output_paths`)."""
    t_start = time.perf_counter()
    round_dir = output_paths(workdir, setup.name)[0]
    os.makedirs(round_dir, exist_ok=True)
    for tmp in glob.glob(os.path.join(round_dir, '.tmp-*')):  # writes cut short by a kill
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
    distributed.barrier(f'likelihood:{setup.name}:cleared')
    fp = fingerprint(setup)
    done = finished_rounds(setup, round_dir, fp)
    todo = [k for k in range(setup.rounds) if k not in done]
    if done:
        logging.info('likelihood %s: resuming, %d of %d rounds on disk', setup.name, len(done),
                     setup.rounds)
    timing = compute_rounds(setup, round_dir, todo, fp)
    distributed.barrier(f'likelihood:{setup.name}:written')  # every process's rounds
    if not distributed.is_main():
        return {}, {}
    ex = load_rounds(setup, round_dir)
    rep = report(setup, ex)
    rep.update(fingerprint=fp, rounds_resumed=len(done), rounds_computed=len(todo))
    timing['wall_seconds'] = time.perf_counter() - t_start
    rep['timing'] = {**{k: round(v, 3) for k, v in timing.items()},
                     'note': 'this invocation only'}
    return rep, ex
