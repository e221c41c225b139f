"""Is the baseline's divergence on the trained 16x16 field the sampler's or the score's?

Not run in CI. ``PYTHONPATH=. python benchmarks/field16_exact_vs_learned.py``
(about 2.5 minutes on the 2-core CPU; needs the trained checkpoint of
``benchmarks/train_gaussian_field.py`` in ``--learned-workdir``).

1. The bench of ``configs/analytic/field_16.py``: the exact score under the sampler settings,
   ladder and sample count of the trained-network bench (``--mode=bench``, the same code as
   ``--mode=bench``), next to the learned-score rows of
   ``benchmarks/results/train_gaussian_field_bench.csv``.
2. A trace of one sampling run per (score, method) at ``--trace-iterations`` (20): the
   config's predictor-corrector solver (``pds.sampling.pc``) stepped one compiled iteration at
   a time in the sampler's context (``pds.sampling.context``, per-example noise streams of
   ``pds.sampling.noise``), so the iterates are the compiled sampler's. After each iteration
   it records the corrector step eps, and per frequency band the
   energy of x (the iterate) relative to what the diffused field has at the level the
   iteration lands on, E|U(x - mu)|^2 / (lambda + sigma_next^2) (1 = on target).
3. The learned score's error per band and noise level on exact noisy samples: relative error
   ||P_band (s_theta - s)|| / ||P_band s|| and gain <P s_theta, P s> / ||P s||^2.
4. Both scores on inputs with c times the nominal noise, x = x0 + c sigma z: the exact score's
   norm grows as c, the network's stays at about 0.945 sqrt(d) / sigma (its output head is
   conv(act(GroupNorm(h))) / sigma, bounded whatever the input's scale).
5. The causal check: the exact score with only that norm ceiling imposed
   (``pds.analytic.gaussian_field.capped_score_builder``, kappa 0.945) run over the whole
   bench ladder.

Writes ``benchmarks/results/field16_exact_bench.json`` (or ``--out``). ``--smoke``: the same
steps on the CPU at toy size: 1 iteration everywhere (bench, traces, capped ladder), 4 samples,
a freshly initialised one-resolution network in place of the trained one (unless
``--learned-workdir`` is given), 8 images for the PDS mask.
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.smoke import add_smoke_flag, smoke_setup, tiny_network, write_json
from configs.analytic.field_16 import get_config as exact_config
from configs.ve.gaussian_field_16_ncsnpp_small import get_config as learned_config
from pds.analytic.fd import noise_floor
from pds.analytic.gaussian_field import capped_score_builder, exact_score_fn, field_from_config
from pds.experiment.assemble import (
    image_shape,
    preconditioner_from_config,
    score_model_from_config,
)
from pds.modes import run_mode
from pds.sampling.context import Context, per_example_norm
from pds.sampling.grid import Interval, sampling_schedule
from pds.sampling.noise import PRIOR_TAG, draw, example_keys
from pds.sampling.pc import PredictorCorrector
from pds.sampling.solver import solver_from_config

LEARNED_CSV = 'benchmarks/results/train_gaussian_field_bench.csv'
OUT = 'benchmarks/results/field16_exact_bench.json'
# Bands of the integer frequency radius |k| (cycles per image); DC is its own band.
BANDS = {'dc': (0.0, 0.5), 'low |k|<=2': (0.5, 2.5), 'mid 3-5': (2.5, 5.5),
         'high >=6': (5.5, 99.0)}
ERROR_SIGMAS = (0.01, 0.05, 0.2, 1.0, 5.0, 20.0)
SCALE_SIGMAS = (0.5, 2.0, 8.0)
EXCESS = (1.0, 1.5, 2.0, 4.0, 8.0)


def band_masks(h: int, w: int) -> dict[str, np.ndarray]:
    ky = np.fft.fftfreq(h, 1.0 / h)[:, None]
    kx = np.fft.fftfreq(w, 1.0 / w)[None, :]
    r = np.sqrt(kx**2 + ky**2)
    return {name: (r >= lo) & (r < hi) for name, (lo, hi) in BANDS.items()}


def spectra(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Orthonormal DFT of x - mu, (N, H, W, C) complex."""
    return np.fft.fft2(np.asarray(x, np.float64) - mean, axes=(1, 2), norm='ortho')


def band_energy_ratio(x, field, sigma: float) -> dict[str, float]:
    """Per band: mean_n sum_k |X_n(k)|^2 / sum_k (lambda(k) + sigma^2) (1 = on target)."""
    h, w = x.shape[1:3]
    power = np.mean(np.abs(spectra(x, np.asarray(field.mean))) ** 2, axis=0)  # (H, W, C)
    target = field.spectrum(h, w) + sigma**2
    return {name: float(power[m].sum() / target[m].sum())
            for name, m in band_masks(h, w).items()}


def frechet_to(x, field, sigma: float) -> float:
    """Exact FD of x to the field diffused to noise level sigma (the moments of gaussian_fd)."""
    h, w = x.shape[1:3]
    spec = spectra(x, np.asarray(field.mean))
    m = spec.mean(axis=0)
    var = np.sum(np.abs(spec - m) ** 2, axis=0) / (len(x) - 1)
    lam = field.spectrum(h, w) + sigma**2
    return float(np.sum(np.abs(m) ** 2) + np.sum((np.sqrt(var) - np.sqrt(lam)) ** 2))


def exact_bench_config(smoke: bool = False):
    """configs/analytic/field_16.py (with --smoke: one iteration, 4 samples, 8 mask images)."""
    config = exact_config()
    if smoke:
        config.bench.steps = (1,)
        config.bench.num_samples = config.bench.batch_size = 4
        config.sampling.pds.num_stat_images = 8
    return config


def bench_exact(workdir: str, smoke: bool = False) -> list[dict]:
    """The sampled bench of the exact score, rows as the learned CSV has them: method 'none'
    or 'pds' and the plug-in statistic (the learned rows were measured with it)."""
    config = exact_bench_config(smoke)
    config.bench.estimate = 'sampled'
    rows = run_mode('bench', config, workdir, overwrite=True)
    return [{'iterations': r['iterations'], 'method': 'none' if r['alpha'] is None else 'pds',
             'frechet_distance': r['frechet_distance_plugin']} for r in rows]


def read_learned_rows(path: str) -> list[dict]:
    with open(path) as f:
        return [{'iterations': int(r['iterations']), 'method': r['method'],
                 'frechet_distance': float(r['frechet_distance'])} for r in csv.DictReader(f)]


def corrector_step_size(solver: PredictorCorrector, ctx: Context, x, interval: Interval):
    """The Langevin corrector's first step size at this iteration, eps = 2 a_t (snr
    E_b||M z_b|| / E_b||M M^T s_b||)^2, from the score, preconditioner and noise draw (slot 0)
    that the solver's own corrector step uses (``pds.sampling.correctors.langevin``)."""
    env = solver.env(ctx)
    grad = env.drift(ctx.score_fn(x, ctx.times(interval.t)))
    z = env.noise_term(ctx.noise(interval, 0))
    ratio = env.batch_mean(per_example_norm(z)) / env.batch_mean(per_example_norm(grad))
    return 2.0 * env.langevin_alpha(interval.index) * (env.snr * ratio) ** 2


def trace(config, score, method: str, iterations: int, num: int) -> dict:
    """One run of the config's predictor-corrector solver, one compiled step at a time: the
    sampler's context (per-example noise streams of ``pds.sampling.noise``, batch means over
    the whole batch) and the solver's own ``init`` / ``step`` / ``output``, so the iterates
    are the compiled sampler's. ``score`` is (builder, variables); the PDS masks are those of
    ``config`` for both scores."""
    cfg = copy.deepcopy(config)
    cfg.sampling.precondition = method
    cfg.sampling.steps = iterations
    field = field_from_config(cfg)
    builder, variables = score
    sde, grid = sampling_schedule(cfg)
    solver = solver_from_config(cfg, sde)
    if not isinstance(solver, PredictorCorrector):
        raise ValueError(f'trace needs the predictor-corrector solver, got {solver.summary()}')
    keys = example_keys(jnp.asarray(cfg.seed, jnp.uint32), jnp.arange(num))
    ctx = Context(sde, builder(sde, variables), preconditioner_from_config(cfg), keys,
                  image_shape(cfg), jnp.mean, jnp.any)

    @jax.jit
    def step(state, interval):
        eps = corrector_step_size(solver, ctx, state[0], interval)
        return solver.step(ctx, state, interval), eps

    x = sde.prior_sampling(ctx.precond.noise(draw(keys, ctx.image_shape, PRIOR_TAG)))
    state = solver.init(ctx, x)
    intervals = grid.intervals()
    sigmas = np.asarray(sde.discrete_sigmas, np.float64)
    rows = []
    for i, index in enumerate(grid.index):
        state, eps = step(state, jax.tree_util.tree_map(lambda a, i=i: a[i], intervals))
        sigma = float(sigmas[index])
        nxt = float(sigmas[index - 1]) if index > 0 else 0.0
        out = np.asarray(state[0] if index > 0 else solver.output(ctx, state))
        rows.append({'iteration': i + 1, 'sigma': sigma, 'sigma_next': nxt,
                     'corrector_eps': float(eps), 'eps_over_sigma2': float(eps) / sigma**2,
                     'fd_to_marginal': frechet_to(out, field, nxt),
                     'energy_ratio': band_energy_ratio(out, field, nxt)})
    return {'method': method, 'iterations': iterations, 'final_fd': rows[-1]['fd_to_marginal'],
            'steps': rows}


def probe_scores(config, builder, variables):
    """(sde, learned score, exact score), both jitted, for the probes below."""
    field = field_from_config(config)
    sde, _ = sampling_schedule(config)
    h = w = config.data.image_size
    return (sde, jax.jit(builder(sde, variables)),
            jax.jit(exact_score_fn(sde, field.variables(h, w))))


def _probe(config, scores, num: int, seed: int):
    """(sde, learned score, exact score, rng, x0): ``scores`` from :func:`probe_scores`, num
    exact samples x0 drawn first from ``default_rng(seed)``, which the caller keeps drawing
    from."""
    h = w = config.data.image_size
    rng = np.random.default_rng(seed)
    return (*scores, rng, field_from_config(config).sample(rng, num, h, w))


def _time_of(sde, sigma: float) -> float:
    """The VE time whose noise level is sigma."""
    return float(np.log(sigma / sde.sigma_min) / np.log(sde.sigma_max / sde.sigma_min))


def score_band_errors(config, scores, num: int) -> list[dict]:
    """Relative error and gain of the learned score per band, on x0 + sigma z (x0 exact)."""
    sde, learned, exact, rng, x0 = _probe(config, scores, num, 2**30 + 101)
    h = w = config.data.image_size
    masks = band_masks(h, w)
    out = []
    for sigma in ERROR_SIGMAS:
        vec_t = jnp.full((num,), _time_of(sde, sigma), jnp.float32)
        x = jnp.asarray(x0 + sigma * rng.standard_normal(x0.shape), jnp.float32)
        a = np.fft.fft2(np.asarray(learned(x, vec_t), np.float64), axes=(1, 2), norm='ortho')
        b = np.fft.fft2(np.asarray(exact(x, vec_t), np.float64), axes=(1, 2), norm='ortho')
        row = {'sigma': sigma}
        for name, m in masks.items():
            am, bm = a[:, m], b[:, m]
            row[name] = {'rel_error': float(np.sqrt(np.sum(np.abs(am - bm) ** 2)
                                                     / np.sum(np.abs(bm) ** 2))),
                         'gain': float(np.real(np.sum(am * np.conj(bm)))
                                       / np.sum(np.abs(bm) ** 2))}
        out.append(row)
    return out


def score_scale_response(config, scores, num: int) -> list[dict]:
    """Both scores at the nominal level sigma on inputs with c times too much noise,
    x = x0 + c sigma z (the state of an iterate that kept excess noise). The exact score is
    linear in x, so its norm grows with c; rms is ||s|| / sqrt(d) times sigma, and gain is
    <s_theta, s> / ||s||^2 (1 = the learned score removes the excess as the exact one does)."""
    sde, learned, exact, rng, x0 = _probe(config, scores, num, 2**30 + 202)
    z = rng.standard_normal(x0.shape)
    out = []
    for sigma in SCALE_SIGMAS:
        vec_t = jnp.full((num,), _time_of(sde, sigma), jnp.float32)
        for c in EXCESS:
            x = jnp.asarray(x0 + c * sigma * z, jnp.float32)
            a = np.asarray(learned(x, vec_t), np.float64)
            b = np.asarray(exact(x, vec_t), np.float64)
            out.append({'sigma': sigma, 'excess': c,
                        'rms_sigma_learned': float(sigma * np.sqrt(np.mean(a**2))),
                        'rms_sigma_exact': float(sigma * np.sqrt(np.mean(b**2))),
                        'gain': float(np.sum(a * b) / np.sum(b**2))})
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument('--learned-workdir', default=None,
                   help='workdir of the trained network (default: runs/train_gaussian_field; '
                        'with --smoke none: a freshly initialised network)')
    p.add_argument('--learned-csv', default=LEARNED_CSV,
                   help="the learned-score bench rows (train_gaussian_field's --mode=bench)")
    p.add_argument('--trace-iterations', type=int, nargs='+', default=[20])
    p.add_argument('--num-samples', type=int, default=64)
    p.add_argument('--skip-bench', action='store_true')
    p.add_argument('--kappa', type=float, default=0.945,
                   help='norm cap of the capped exact score (the learned score measures 0.945)')
    p.add_argument('--out', default=OUT)
    add_smoke_flag(p)
    args = p.parse_args()
    if args.smoke:
        smoke_setup()
        args.trace_iterations, args.num_samples = [1], 4
    elif args.learned_workdir is None:
        args.learned_workdir = 'runs/train_gaussian_field'
    bench_config = exact_bench_config(args.smoke)

    result: dict = {'config': 'configs/analytic/field_16.py',
                    'learned_config': 'configs/ve/gaussian_field_16_ncsnpp_small.py',
                    'devices': f'{jax.device_count()} x {jax.devices()[0].device_kind}',
                    'cpu_count': os.cpu_count(), 'smoke': args.smoke}
    t0 = time.perf_counter()
    if not args.skip_bench:
        with tempfile.TemporaryDirectory() as workdir:
            rows = bench_exact(workdir, args.smoke)
        learned = {(r['iterations'], r['method']): r['frechet_distance']
                   for r in read_learned_rows(args.learned_csv)}
        table = []
        for n in sorted({r['iterations'] for r in rows}):
            got = {r['method']: r['frechet_distance'] for r in rows if r['iterations'] == n}
            table.append({'iterations': n, 'nfe': 2 * n,
                          'exact_baseline': got['none'], 'exact_pds': got['pds'],
                          'learned_baseline': learned.get((n, 'none')),
                          'learned_pds': learned.get((n, 'pds'))})
            print(table[-1], flush=True)
        result['bench'] = table
        num = bench_config.bench.num_samples
        size = bench_config.data.image_size
        result['noise_floor'] = noise_floor(field_from_config(bench_config), num, size, size,
                                            seed=bench_config.seed + 1)[0]
        result['num_samples'] = num
        result['bench_seconds'] = round(time.perf_counter() - t0, 1)

    lcfg = learned_config()
    if args.smoke:
        tiny_network(lcfg, lcfg.data.image_size)
        lcfg.sampling.pds.num_stat_images = 8
    builder, variables, _, _ = score_model_from_config(lcfg, args.learned_workdir)
    field_vars = field_from_config(lcfg).variables(lcfg.data.image_size, lcfg.data.image_size)
    scores = {'exact': (exact_score_fn, field_vars), 'learned': (builder, variables),
              'exact_capped': (capped_score_builder(args.kappa), field_vars)}
    traces = []
    for n in args.trace_iterations:
        for name in ('exact', 'learned'):
            for method in ('none', 'pds'):
                tr = trace(lcfg, scores[name], method, n, args.num_samples)
                tr['score'] = name
                traces.append(tr)
                print(f"trace {name:7s} {method:4s} {n} it: final FD {tr['final_fd']:.3g}",
                      flush=True)
    result['traces'] = traces
    capped = []
    for n in bench_config.bench.steps:
        row = {'iterations': n, 'kappa': args.kappa}
        for method in ('none', 'pds'):
            row[method] = trace(lcfg, scores['exact_capped'], method, n,
                                args.num_samples)['final_fd']
        capped.append(row)
        print('exact score, norm capped:', row, flush=True)
    result['exact_capped'] = capped
    probes = probe_scores(lcfg, builder, variables)
    result['score_band_errors'] = score_band_errors(lcfg, probes, args.num_samples)
    result['score_scale_response'] = score_scale_response(lcfg, probes, args.num_samples)
    for r in result['score_scale_response']:
        print({k: round(v, 3) for k, v in r.items()}, flush=True)
    result['total_seconds'] = round(time.perf_counter() - t0, 1)
    write_json(args.out, result, indent=1)
    print(f'wrote {args.out} ({result["total_seconds"]} s)')


if __name__ == '__main__':
    main()
