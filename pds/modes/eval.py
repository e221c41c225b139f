"""``--mode=eval``: FID, IS and KID of ``eval.num_samples`` samples per checkpoint, resumable.

Which models: for a network, every stored step s of ``<workdir>/checkpoints`` with
``eval.begin_ckpt <= s <= eval.end_ckpt`` (``end_ckpt = -1``: no upper bound;
``begin_ckpt = -1``: the newest step only); an exact-score model (an exact target of
:mod:`pds.analytic.targets`, such as ``gaussian_field``) has one evaluation named ``exact``.
``<ckpt>`` below is the step or ``exact``.

Rounds: ``eval.num_samples`` must be a multiple of ``eval.batch_size`` (whole rounds; else a
ConfigError), and ``eval.batch_size`` a multiple of the device count. Round k draws the
examples with global indices [k B, (k + 1) B) (``pds.experiment.rounds.sample_rounds``), so it
depends only on the settings, the seed and k. Outputs, each written atomically (temporary name, then
rename; a file is whole or absent)::

    <workdir>/eval/<ckpt>/round_<k>.npz   samples (B, H, W, C) uint8, pool_3 (B, 2048) and
                                          logits (B, 1008) float32, index (B,) the rows'
                                          global example indices, nfe (B,) their score
                                          evaluations, round (int), fingerprint
                                          (str: SHA-256 of the settings); in a job of n
                                          processes each process i writes its rows to
                                          round_<k>_p<i>of<n>.npz instead
    <workdir>/eval/report_<ckpt>.npz      mu (2048,), sigma (2048, 2048) float64, num_images,
                                          resize: our statistics format (metrics.load_stats)
    <workdir>/eval/report_<ckpt>.json     FID, IS, KID, sample count, NFE, sampler settings
                                          (with PDS alpha and masks), timing; written last

Resuming: a restarted eval keeps the round files whose fingerprint matches the current
settings and samples only the missing rounds, so a killed run loses at most the round in
flight and never duplicates one; a round written with other settings is a ConfigError (pass
``--overwrite`` to start over); a damaged round file (unreadable, truncated, wrong keys or
shapes) is reported with a warning, removed and sampled again. A checkpoint whose report of
the same settings exists is skipped unless ``--overwrite`` (a report of other settings is a
ConfigError; a damaged one is reported, removed with its ``.npz`` and computed again). Host memory:
one round of samples at a time, plus 2048 + 1008 floats of features per sample for the
report. With several processes every process computes the Inception features of its own rows
and writes its own round files; the processes agree on the rounds still to draw, process 0
gathers the features (not the images) and writes the report. The workdir must be visible to
every process (a shared file system, as for checkpoints).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import time

import jax
import numpy as np
from absl import logging

from evaluation.inception import RESIZE_POLICY
from pds.analytic.targets import has_exact_score
from pds.experiment.assemble import Experiment, experiment_from_config
from pds.experiment.rounds import (
    CompiledSampler,
    Round,
    compile_sampler,
    nfe_fields,
    sample_rounds,
    sampler_summary,
)
from pds.quality import inception
from pds.runtime import distributed
from pds.runtime.errors import ConfigError
from pds.runtime.mesh import check_batch, data_mesh
from pds.sampling.sampler import to_uint8
from pds.sampling.solver import Solver, solver_from_config
from pds.storage import outputs, readers, replace

EXACT = 'exact'
_UNHASHED_SAMPLING = ('progress_every', 'save_raw')  # do not change the samples


@dataclasses.dataclass
class EvalContext:
    """What every checkpoint's evaluation shares."""

    config: object
    workdir: str
    exp: Experiment
    solver: Solver
    params: dict
    weights_digest: str
    ref: inception.Reference | None
    num_samples: int
    batch_size: int
    compiled: CompiledSampler | None = None  # one compiled sampler serves every checkpoint

    @property
    def rounds(self) -> int:
        return self.num_samples // self.batch_size


def check_rounds(num_samples, batch_size) -> tuple[int, int]:
    """(num_samples, batch_size): integers, num_samples >= 2 and a multiple of batch_size."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError('eval.batch_size', batch_size, 'an integer >= 1')
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ConfigError('eval.num_samples', num_samples, 'an integer >= 2')
    if num_samples % batch_size:
        raise ConfigError('eval.num_samples', num_samples,
                          f'a multiple of eval.batch_size={batch_size} (eval draws whole '
                          f'rounds; e.g. {max(1, num_samples // batch_size) * batch_size})')
    return num_samples, batch_size


def checkpoint_names(config, workdir: str) -> list[str]:
    """'exact' for exact-score models, else the selected stored steps (see module doc)."""
    if has_exact_score(config):
        return [EXACT]
    from pds.storage.sampling_checkpoints import stored_steps

    begin, end = config.eval.begin_ckpt, config.eval.end_ckpt
    for field, v in (('eval.begin_ckpt', begin), ('eval.end_ckpt', end)):
        if isinstance(v, bool) or not isinstance(v, int) or v < -1:
            raise ConfigError(field, v, 'an integer >= 0, or -1 (see pds/modes/eval.py)')
    steps = stored_steps(os.path.join(workdir, 'checkpoints'))
    chosen = steps[-1:] if begin == -1 else [s for s in steps if begin <= s
                                              and (end == -1 or s <= end)]
    if not chosen:
        raise ConfigError('eval.begin_ckpt', begin,
                          f'a range [begin_ckpt, end_ckpt={end}] holding a stored checkpoint '
                          f'step (stored in {workdir}/checkpoints: {steps}; --mode=convert or '
                          '--mode=train writes them)')
    return [str(s) for s in chosen]


def fingerprint(config, name: str, weights_digest: str) -> str:
    """SHA-256 of everything that determines a round file's contents."""
    sampling = {k: v for k, v in config.sampling.to_dict().items()
                if k not in _UNHASHED_SAMPLING}
    blob = {'sampling': sampling, 'model': config.model.to_dict(),
            'data': config.data.to_dict(), 'seed': config.seed,
            'batch_size': config.eval.batch_size, 'checkpoint': name,
            'inception': weights_digest, 'resize': RESIZE_POLICY}
    text = json.dumps(blob, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def round_path(round_dir: str, k: int) -> str:
    """This process's file of round k (``distributed.process_file``)."""
    return os.path.join(round_dir, distributed.process_file('round', k))


def local_batch(batch: int) -> int:
    """Rows of a round held by this process (its devices' share of the batch)."""
    return batch * jax.local_device_count() // jax.device_count()


def finished_rounds(round_dir: str, rounds: int, batch: int, fp: str) -> set[int]:
    """Rounds k < rounds on disk with this fingerprint for every process.

    A round file of other settings (readable, another fingerprint) is a ConfigError; a
    damaged one (unreadable, truncated, missing keys, wrong shapes or rows, non-finite
    features) is reported with a warning naming it and removed: its round is sampled again.
    """
    done = np.zeros(rounds, bool)
    rows = local_batch(batch)
    for k in range(rounds):
        path = round_path(round_dir, k)
        if not os.path.exists(path):
            continue
        try:
            data = readers.read_round_file(path)
        except ConfigError as err:
            _discard_round(path, k, err.allowed)
            continue
        if data['fingerprint'] != fp:
            raise ConfigError('--workdir', os.path.dirname(round_dir),
                              f'eval rounds of the current settings ({path} was written with '
                              'other sampler, model, seed or batch settings; pass --overwrite '
                              'to discard them)')
        if len(data['pool_3']) != rows or data['round'] != k:
            _discard_round(path, k, f"it holds round {data['round']} with "
                           f"{len(data['pool_3'])} rows, not round {k} with {rows}")
            continue
        done[k] = True
    everywhere = distributed.gather(done).all(axis=0)  # a round is done when all its parts are
    return {int(k) for k in np.flatnonzero(everywhere)}


def _discard_round(path: str, k: int, reason: str) -> None:
    """Warn about a damaged round file and remove it (its round is then sampled again)."""
    logging.warning('eval: round file %s is damaged (%s); removing it, round %d is sampled '
                    'again', path, reason, k)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _remove_temporaries(round_dir: str) -> None:
    """Temporary files of writes cut short by a kill (never read, only tidied)."""
    for path in glob.glob(os.path.join(round_dir, '.tmp-*')):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _experiment_for(ctx: EvalContext, name: str) -> Experiment:
    if name == EXACT:
        return ctx.exp
    from pds.storage.sampling_checkpoints import restore_variables

    variables = restore_variables(os.path.join(ctx.workdir, 'checkpoints'), ctx.config,
                                  int(name))
    return dataclasses.replace(ctx.exp, variables=variables)


def _sample_missing(ctx: EvalContext, name: str, round_dir: str, todo: list[int],
                    fp: str) -> dict:
    """Sample rounds ``todo``; each round's samples and features go to its file at once."""
    timing = {'compile_seconds': 0.0, 'sampling_seconds': 0.0, 'inception_seconds': 0.0}
    if not todo:
        return timing
    batch = int(ctx.config.eval.inception_batch_size)

    def on_round(r: Round) -> None:
        t0 = time.perf_counter()
        images = to_uint8(r.rows, ctx.config.data.centered)
        feats = inception.image_features(ctx.params, images, batch)
        outputs.write_npz(round_path(round_dir, r.k), samples=images, pool_3=feats['pool_3'],
                          logits=feats['logits'], index=r.index, round=np.int64(r.k),
                          nfe=r.nfe,
                          fingerprint=np.array(fp))
        timing['inception_seconds'] += time.perf_counter() - t0

    exp = _experiment_for(ctx, name)
    if ctx.compiled is None:
        ctx.compiled = compile_sampler(exp, ctx.solver, ctx.config, ctx.batch_size, data_mesh())
        timing['compile_seconds'] = ctx.compiled.compile_seconds
    res = sample_rounds(exp, ctx.solver, ctx.config, ctx.num_samples, ctx.batch_size, on_round,
                        desc=f'eval {name}', only=set(todo), compiled=ctx.compiled)
    # sample_rounds' clock includes on_round; report the sampler's share alone.
    timing['sampling_seconds'] = max(0.0, res.sampling_seconds - timing['inception_seconds'])
    return timing


def load_round_features(round_dir: str, rounds: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pool_3 (N, 2048), logits (N, 1008)) of rounds 0..rounds-1 of every process, in global
    example order (each process reads its own files; no samples are read or gathered)."""
    parts: dict[str, list[np.ndarray]] = {'index': [], 'pool_3': [], 'logits': [], 'nfe': []}
    for k in range(rounds):
        path = round_path(round_dir, k)
        try:
            data = readers.read_round_file(path, keys=tuple(parts))
        except ConfigError as err:  # damaged since it was checked or written: resample it
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            raise ConfigError(err.field, err.value, f'{err.allowed}; the file was removed: run '
                              'the same command again to sample its round anew') from None
        for key, chunks in parts.items():
            chunks.append(data[key])
    mine = {key: np.concatenate(chunks) for key, chunks in parts.items()}
    every = {key: np.concatenate(list(v)) for key, v in distributed.gather(mine).items()}
    order = np.argsort(every['index'], kind='stable')
    if not np.array_equal(every['index'][order], np.arange(len(order))):
        raise RuntimeError(f'{round_dir}: example indices repeat or leave gaps')
    return every['pool_3'][order], every['logits'][order], every['nfe'][order]


def checkpoint_outputs(workdir: str, name: str) -> tuple[str, str, str]:
    """(round folder, report .json, report .npz) of checkpoint ``name``."""
    eval_dir = os.path.join(workdir, 'eval')
    return (os.path.join(eval_dir, name), os.path.join(eval_dir, f'report_{name}.json'),
            os.path.join(eval_dir, f'report_{name}.npz'))


def evaluate_checkpoint(ctx: EvalContext, name: str, overwrite: bool) -> dict:
    """Sample the missing rounds of ``name``, then write and return its report. With
    ``overwrite`` its earlier rounds and report are set aside, and come back unchanged if
    this evaluation fails (:mod:`pds.storage.replace`)."""
    if not overwrite:
        return _evaluate_checkpoint(ctx, name)
    paths = list(checkpoint_outputs(ctx.workdir, name))
    with replace.replacing(ctx.workdir, paths, True, tag=f'eval:{name}'):
        return _evaluate_checkpoint(ctx, name)


def _evaluate_checkpoint(ctx: EvalContext, name: str) -> dict:
    t_start = time.perf_counter()
    round_dir, report_json, report_npz = checkpoint_outputs(ctx.workdir, name)
    os.makedirs(round_dir, exist_ok=True)
    _remove_temporaries(round_dir)
    distributed.barrier(f'eval:{name}:cleared')
    fp = fingerprint(ctx.config, name, ctx.weights_digest)
    if os.path.exists(report_json):
        report = _existing_report(ctx, report_json, report_npz, fp)
        if report is not None:
            return report
    done = finished_rounds(round_dir, ctx.rounds, ctx.batch_size, fp)
    todo = [k for k in range(ctx.rounds) if k not in done]
    if done:
        logging.info('eval %s: resuming, %d of %d rounds on disk', name, len(done), ctx.rounds)
    timing = _sample_missing(ctx, name, round_dir, todo, fp)
    pool3, logits, nfe = load_round_features(round_dir, ctx.rounds)
    if not distributed.is_main():
        return {}
    if len(pool3) != ctx.num_samples:  # cannot happen with whole rounds; guard the invariant
        raise RuntimeError(f'{round_dir} holds {len(pool3)} samples, not {ctx.num_samples}')
    t_score = time.perf_counter()
    report = _report(ctx, name, pool3, logits, nfe, len(done), len(todo))
    report['fingerprint'] = fp
    timing['scoring_seconds'] = time.perf_counter() - t_score
    timing['wall_seconds'] = time.perf_counter() - t_start
    report['timing'] = {**{k: round(v, 3) for k, v in timing.items()},
                        'note': 'this invocation only' + (
                            f'; {len(done)} rounds were sampled by an earlier run'
                            if done else '')}
    outputs.write_npz(report_npz, **inception.stats_arrays(pool3))
    outputs.write_json(report_json, report)
    return report


def _existing_report(ctx: EvalContext, path: str, npz_path: str, fp: str) -> dict | None:
    """A finished report of the same settings is kept; a readable one of other settings is a
    ConfigError; a damaged one (unreadable, truncated, not a JSON object) is reported with a
    warning, removed with its statistics ``npz_path``, and None is returned (recompute)."""
    try:
        report = readers.read_eval_report(path)
    except ConfigError as err:
        logging.warning('eval: report %s is damaged (%s); removing it and %s, the report is '
                        'computed again', path, err.allowed, npz_path)
        if distributed.is_main():
            for stale in (path, npz_path):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(stale)
        return None
    if report.get('fingerprint') != fp or report.get('num_samples') != ctx.num_samples:
        raise ConfigError('--workdir', ctx.workdir,
                          f'a directory without an eval report of other settings ({path} '
                          'exists; pass --overwrite to replace it)')
    logging.info('eval %s: %s exists, skipped (--overwrite recomputes it)',
                 report.get('checkpoint'), path)
    return report


def _report(ctx: EvalContext, name: str, pool3: np.ndarray, logits: np.ndarray,
            nfe: np.ndarray, resumed: int, sampled: int) -> dict:
    config, exp = ctx.config, ctx.exp
    report = {
        'checkpoint': name, 'step': None if name == EXACT else int(name),
        'num_samples': len(pool3), 'batch_size': ctx.batch_size, 'rounds': ctx.rounds,
        'rounds_resumed': resumed, 'rounds_sampled': sampled,
        'devices': jax.device_count(), 'processes': jax.process_count(),
        'iterations': exp.grid.num_steps,
        **nfe_fields(nfe),
        'seed': config.seed, 'sampler': sampler_summary(config, exp, ctx.solver),
        'inception_weights': {'path': config.eval.inception_weights,
                              'sha256': ctx.weights_digest},
    }
    report.update(inception.score(pool3, logits, ctx.ref, config))
    return report


def run(config, workdir: str, overwrite: bool = False) -> dict[str, dict]:
    """Evaluate every selected checkpoint; returns {ckpt: report}. Input errors (rounds,
    weights, reference statistics, checkpoints) are raised before any sampling."""
    outputs.prepare_workdir(workdir)
    replace.check_not_interrupted(workdir)
    num, batch = check_rounds(config.eval.num_samples, config.eval.batch_size)
    check_batch('eval.batch_size', batch, data_mesh())
    inception.check_eval_fields(config)
    names = checkpoint_names(config, workdir)
    ref = inception.load_reference(config.eval.ref_stats)  # the cheaper check first
    params, digest = inception.inception_params(config)
    exp = experiment_from_config(config, workdir)
    solver = solver_from_config(config, exp.sde)
    ctx = EvalContext(config, workdir, exp, solver, params, digest, ref, num, batch)
    reports = {name: evaluate_checkpoint(ctx, name, overwrite) for name in names}
    if ctx.compiled is not None:
        ctx.compiled.bar.close()
    return reports
