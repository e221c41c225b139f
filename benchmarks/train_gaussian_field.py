"""Train the CPU-sized NCSN++ on the 16x16 Gaussian field, then check what it learned.

Not run in CI. ``PYTHONPATH=. python benchmarks/train_gaussian_field.py [--steps N]``

1. Trains ``configs/ve/gaussian_field_16_ncsnpp_small.py`` (``--mode=train``) in
   ``runs/train_gaussian_field``, exporting the EMA parameters every ``--every`` steps.
2. The curve: at every export, the relative error of the learned score against the exact
   score of the field (``pds.analytic.gaussian_field.exact_score_fn``) on held-out noisy samples
   x = x0 + sigma z (x0 exact field samples, a seed training never uses), per noise level:

       err(sigma) = sqrt( sum_b ||s_theta(x_b, t) - s(x_b, t)||^2 / sum_b ||s(x_b, t)||^2 ).

3. Samples of the final model, baseline and PDS (same seed and noise draws), at each
   iteration count of ``--iterations`` (40 by default), scored with the exact Frechet
   distance to the field (``pds/analytic/fd.py``), with its noise floor.

Writes ``benchmarks/results/train_gaussian_field.json`` (or ``--out``). ``--smoke``: an 8 x 8
one-resolution network, 2 steps of batch 4, 1 sampler iteration, 4 samples, on the CPU, in a
temporary workdir unless ``--workdir`` is given.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.smoke import add_smoke_flag, smoke_setup, tiny_network, write_json
from configs.ve.gaussian_field_16_ncsnpp_small import get_config
from models.registry import create_model
from pds.analytic.fd import frechet_distance, noise_floor
from pds.analytic.gaussian_field import exact_score_fn, field_from_config
from pds.experiment.assemble import experiment_from_config
from pds.experiment.rounds import Round, sample_rounds
from pds.method.score import get_score_fn
from pds.method.sde import sde_from_config
from pds.modes import run_mode
from pds.sampling.solver import solver_from_config
from pds.storage.sampling_checkpoints import restore_variables, stored_steps
from pds.storage.summaries import METRICS_FILE

SIGMAS = (0.02, 0.1, 0.5, 2.0, 10.0)
HELD_OUT_SEED = 2**30 + 17


def score_errors(config, variables, x0: np.ndarray) -> dict[str, float]:
    """Relative L2 error of the learned score at each sigma of SIGMAS (one noise draw each)."""
    sde = sde_from_config(config)
    model = create_model(config)
    field = field_from_config(config)
    h, w = x0.shape[1:3]
    learned = jax.jit(get_score_fn(sde, model, variables, train=False, continuous=True))
    exact = jax.jit(exact_score_fn(sde, field.variables(h, w)))
    out = {}
    rng = np.random.default_rng(HELD_OUT_SEED + 1)
    for sigma in SIGMAS:
        t = np.log(sigma / sde.sigma_min) / np.log(sde.sigma_max / sde.sigma_min)
        vec_t = jnp.full((len(x0),), t, jnp.float32)
        x = jnp.asarray(x0 + sigma * rng.standard_normal(x0.shape), jnp.float32)
        a, b = np.asarray(learned(x, vec_t), np.float64), np.asarray(exact(x, vec_t), np.float64)
        out[str(sigma)] = float(np.sqrt(np.sum((a - b) ** 2) / np.sum(b**2)))
    return out


def sample_fd(config, workdir: str, iterations: int, num: int) -> dict[str, float]:
    """Exact FD of ``num`` samples of the newest checkpoint, baseline and PDS."""
    field = field_from_config(config)
    out = {}
    for method in ('none', 'pds'):
        cfg = copy.deepcopy(config)
        cfg.sampling.precondition = method
        cfg.sampling.steps = iterations
        exp = experiment_from_config(cfg, workdir)
        got: list[np.ndarray] = []

        def keep(r: Round, acc=got) -> None:
            acc.append(r.rows)

        res = sample_rounds(exp, solver_from_config(cfg, exp.sde), cfg, num, num,
                            on_round=keep, desc=method)
        out[method] = frechet_distance(np.concatenate(got), field)
        out[f'{method}_sampling_seconds'] = res.sampling_seconds
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument('--steps', type=int, default=3000)
    p.add_argument('--every', type=int, default=500)
    p.add_argument('--iterations', type=int, nargs='+', default=[40])
    p.add_argument('--num-samples', type=int, default=256)
    p.add_argument('--workdir', default=None,
                   help='training workdir (default: runs/train_gaussian_field; with --smoke a '
                        'temporary folder)')
    p.add_argument('--out', default='benchmarks/results/train_gaussian_field.json')
    add_smoke_flag(p)
    args = p.parse_args()
    config = get_config()
    if args.smoke:
        smoke_setup()
        tiny_network(config)
        args.steps, args.every, args.iterations, args.num_samples = 2, 2, [1], 4
        config.training.batch_size = 4
        config.training.n_jitted_steps = 1
        config.training.log_freq = 1
        config.sampling.pds.num_stat_images = 8
    with tempfile.TemporaryDirectory() as tmp:
        if args.workdir is None:
            args.workdir = os.path.join(tmp, 'train') if args.smoke else 'runs/train_gaussian_field'
        run(config, args)


def run(config, args) -> None:
    config.training.n_iters = args.steps
    config.training.snapshot_freq = args.every
    config.training.snapshot_freq_for_preemption = args.every
    t0 = time.perf_counter()
    last = run_mode('train', config, args.workdir, overwrite=True)
    train_seconds = time.perf_counter() - t0
    print(f'trained {args.steps} steps in {train_seconds:.0f} s: {last}', flush=True)

    field = field_from_config(config)
    size = config.data.image_size
    x0 = field.sample(np.random.default_rng(HELD_OUT_SEED), 4 if args.smoke else 64, size, size)
    ckpt_dir = os.path.join(args.workdir, 'checkpoints')
    curve = []
    for step in stored_steps(ckpt_dir):
        errs = score_errors(config, restore_variables(ckpt_dir, config, step), x0)
        curve.append({'step': step, 'relative_score_error': errs})
        print(step, {k: round(v, 4) for k, v in errs.items()}, flush=True)

    floor, floor_std = noise_floor(field, args.num_samples, size, size, seed=config.seed + 1)
    fds = []
    for n in args.iterations:
        row = {'iterations': n, **sample_fd(config, args.workdir, n, args.num_samples)}
        row['pds_over_baseline'] = row['pds'] / row['none']
        fds.append(row)
        print(row, flush=True)
    with open(os.path.join(args.workdir, METRICS_FILE)) as f:
        metrics = [json.loads(line) for line in f]
    rates = [m['steps_per_sec'] for m in metrics if 'steps_per_sec' in m][1:]
    result = {
        'config': 'configs/ve/gaussian_field_16_ncsnpp_small.py', 'smoke': args.smoke,
        'image_size': size, 'steps': args.steps,
        'batch_size': config.training.batch_size, 'train_seconds': round(train_seconds, 1),
        'steps_per_sec_median': float(np.median(rates)) if rates else None,
        'devices': f'{jax.device_count()} x {jax.devices()[0].device_kind}',
        'cpu_count': os.cpu_count(), 'sigmas': list(SIGMAS), 'score_error_curve': curve,
        'num_samples': args.num_samples, 'noise_floor': floor, 'noise_floor_std': floor_std,
        'frechet_distance': fds,
        'loss_curve': [{k: m[k] for k in ('step', 'loss')} for m in metrics if 'loss' in m],
    }
    write_json(args.out, result, indent=1)
    print(json.dumps({k: result[k] for k in ('train_seconds', 'steps_per_sec_median',
                                             'noise_floor', 'frechet_distance')}, indent=1))


if __name__ == '__main__':
    main()
