"""Population Frechet distance against NFE on an exact Gaussian field, by exact moments.

For each iteration count of the config's bench ladder, the baseline (no preconditioner) and
PDS at each alpha (reference predictor form, and the invariant form at the config's alpha)
are propagated exactly (``pds.analytic.moments``): no sampling noise. The reference line is
the expected plug-in FD of 50,000 exact samples (``pds.analytic.fd.expected_floor``).

    python benchmarks/population_fd.py [--config configs/analytic/ffhq_256.py]
        [--alphas 2 5 10 30] [--out benchmarks/results/population_fd_ffhq256.json] [--smoke]

Writes the JSON (rows, floor, NFE to reach the floor per method) and a markdown table next
to it (.md).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.util
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.smoke import add_smoke_flag, smoke_setup, write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(path: str):
    spec = importlib.util.spec_from_file_location('bench_config', os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def methods(alphas: list[float], invariant_alpha: float) -> list[tuple[str, float | None, str]]:
    """(label, alpha or None for the baseline, predictor form)."""
    out = [('baseline', None, 'reference')]
    out += [(f'PDS a={a:g}', a, 'reference') for a in alphas]
    out.append((f'PDS a={invariant_alpha:g} invariant', invariant_alpha, 'invariant'))
    return out


def first_below(rows: list[dict], floor: float) -> int | None:
    """The smallest NFE on the ladder whose FD is at or below the floor (None if none)."""
    hits = [r['nfe'] for r in rows if r['frechet_distance'] <= floor]
    return min(hits) if hits else None


def run(config, alphas: list[float]) -> dict:
    from pds.analytic.fd import expected_floor
    from pds.analytic.moments import population_moments
    from pds.modes.experiment import experiment_from_config
    from pds.sampling.grid import sampling_schedule

    h = config.data.image_size
    rows = []
    for label, alpha, form in methods(alphas, float(config.sampling.pds.alpha)):
        cfg = copy.deepcopy(config)
        cfg.sampling.precondition = 'none' if alpha is None else 'pds'
        cfg.sampling.pds.predictor_form = form
        if alpha is not None:
            cfg.sampling.pds.alpha = alpha
        exp = experiment_from_config(cfg)  # the mask once per method
        for n in config.bench.steps:
            cfg.sampling.steps = n
            sde, grid = sampling_schedule(cfg)
            t0 = time.perf_counter()
            pm = population_moments(cfg, dataclasses.replace(exp, sde=sde, grid=grid))
            rows.append({'method': label, 'alpha': alpha, 'predictor_form': form,
                         'iterations': n, 'nfe': pm.nfe,
                         'frechet_distance': pm.frechet_distance,
                         'band_variance_ratio': pm.band_ratios,
                         'seconds': time.perf_counter() - t0})
            print(f'{label:>24} {n:5d} it  FD {pm.frechet_distance:10.4g}', flush=True)
        field = exp.field
    floor = expected_floor(field.spectrum(h, h))
    labels = [m[0] for m in methods(alphas, float(config.sampling.pds.alpha))]
    reach = {m: first_below([r for r in rows if r['method'] == m], floor) for m in labels}
    return {'image_size': h, 'steps': list(config.bench.steps), 'floor_50k': floor,
            'nfe_to_floor': reach, 'rows': rows}


def markdown(result: dict) -> str:
    labels = list(result['nfe_to_floor'])
    by = {(r['iterations'], r['method']): r for r in result['rows']}
    lines = [f"Population FD (exact moments), {result['image_size']}x{result['image_size']} "
             f"field; 50k-sample floor {result['floor_50k']:.3g}.", '',
             '| iterations | NFE | ' + ' | '.join(labels) + ' |',
             '|---:|---:|' + '---:|' * len(labels)]
    for n in result['steps']:
        cells = [f"{by[(n, m)]['frechet_distance']:.3g}" for m in labels]
        lines.append(f"| {n} | {by[(n, labels[0])]['nfe']} | " + ' | '.join(cells) + ' |')
    reach = [str(result['nfe_to_floor'][m] or '-') for m in labels]
    lines.append('| NFE to floor | | ' + ' | '.join(reach) + ' |')
    return '\n'.join(lines) + '\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default='configs/analytic/ffhq_256.py')
    parser.add_argument('--alphas', type=float, nargs='+', default=[2.0, 5.0, 10.0, 30.0])
    parser.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results',
                                                      'population_fd_ffhq256.json'))
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke_setup()
    config = load_config(args.config)
    if args.smoke:
        config.data.image_size = 8
        config.bench.steps = (2, 3)
        config.sampling.pds.num_stat_images = 8
        args.alphas = args.alphas[:1]
    result = run(config, args.alphas)
    result.update(config=args.config, smoke=args.smoke)
    write_json(args.out, result)
    with open(os.path.splitext(args.out)[0] + '.md', 'w') as f:
        f.write(markdown(result))
    print(markdown(result))


if __name__ == '__main__':
    main()
