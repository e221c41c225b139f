"""Population Frechet distance against NFE on an exact Gaussian field, by exact moments.

For each iteration count of the config's bench ladder, the baseline (no preconditioner) and
PDS at each alpha (reference predictor form, and the invariant form at the config's alpha)
are propagated exactly (``pds.analytic.moments``): no sampling noise. The reference line is
the expected plug-in FD of 50,000 exact samples (``pds.analytic.fd.expected_floor``).

    python benchmarks/population_fd.py [--config configs/analytic/ffhq_256.py]
        [--alphas 2 5 10 30] [--steps N ...] [--out benchmarks/results/population_fd_ffhq256.json]
        [--smoke]

Writes the JSON (rows, floor, NFE to reach the floor per method) and a markdown table next
to it (.md).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.smoke import add_smoke_flag, load_config, smoke_setup, write_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(config, alphas: list[float]) -> dict:
    """The population rows of ``--mode=bench`` (``pds.quality.estimates``) for ``alphas``."""
    from pds.analytic.fd import expected_floor
    from pds.quality import estimates
    from pds.quality.report import nfe_to_target

    config = copy.deepcopy(config)
    config.bench.alphas = tuple(alphas)
    experiments = estimates.Experiments(config)
    rows = []
    for method in estimates.methods(config, 'population'):
        for n in config.bench.steps:
            r = estimates.population_cell(config, experiments, method, n)
            rows.append({'method': r['method'], 'alpha': r['alpha'],
                         'predictor_form': r['predictor_form'] or 'reference',
                         'iterations': n, 'nfe': r['nfe'],
                         'frechet_distance': r['frechet_distance'],
                         'band_variance_ratio': {b: r[f'variance_ratio_{b}']
                                                 for b in ('low', 'mid', 'high')},
                         'seconds': r['seconds']})
            print(f"{r['method']:>24} {n:5d} it  FD {r['frechet_distance']:10.4g}", flush=True)
    h = config.data.image_size
    floor = expected_floor(experiments.base.field.spectrum(h, h))
    return {'image_size': h, 'steps': list(config.bench.steps), 'floor_50k': floor,
            'nfe_to_floor': nfe_to_target(rows, floor, 'method', margin_se=0.0), 'rows': rows}


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
    parser.add_argument('--steps', type=int, nargs='+', default=None,
                        help="iteration counts (default: the config's bench.steps)")
    parser.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results',
                                                      'population_fd_ffhq256.json'))
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke_setup()
    config = load_config(args.config)
    if args.steps:
        config.bench.steps = tuple(args.steps)
    if args.smoke:
        config.data.image_size = 8
        config.bench.steps = (2, 3)
        config.sampling.pds.num_stat_images = 8
        args.alphas = args.alphas[:1]
    result = run(config, args.alphas)
    result.update(config=args.config, smoke=args.smoke)
    write_report(args.out, result, markdown(result))


if __name__ == '__main__':
    main()
