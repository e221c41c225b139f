"""The SWD data floor of the photograph patches (configs/photo/), and what moves it.

For each photo config and sample size n, the SWD x 1e3 (evaluation/swd.py, the paper's
settings: 128 descriptors per image, 512 directions, per-set normalisation) with its SE between:

- floor: reference A (split 'eval') against reference B (part 'eval_b'): two disjoint sets of
  held-out cells, the data floor a sampler is compared with;
- train_vs_A: n training patches (unflipped) against reference A: what a model that samples the
  training distribution exactly would score; near the floor, the reference sets stand for the
  training distribution;
- A_vs_A: two independent draws of n from reference A (the same held-out pixels): below the
  floor by the share of patches the two draws have in common;
- region_train_vs_A and region_floor: the same with ``data.photo_holdout='region'`` (the
  generalisation check: a held-out strip on the right of each photograph).

``--se-repeats R`` also checks the SE: R independent repeats of train_vs_A on the first
config at the first size (draws [k n, (k + 1) n) of each split, SWD seed k), the spread of
their values against the mean stated SE.

    PYTHONPATH=. python benchmarks/photo_swd_floor.py [--sizes 256 1024] [--se-repeats 0]
        [--weighting equal|area] [--out benchmarks/results/photo_swd_floor.json] [--smoke]

``--weighting`` overrides the configs' ``data.photo_weighting``.

Writes the JSON and a markdown table next to it (.md).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.smoke import add_smoke_flag, load_config, write_report

CONFIGS = ('configs/photo/photos_16.py', 'configs/photo/photos_32.py')


def draws(config, part: str, start: int, n: int):
    from pds.data.photos import PhotoSource

    return PhotoSource(config, config.seed, part).read(range(start, start + n))


def comparisons(config, n: int, swd_kwargs: dict) -> list[dict]:
    from evaluation.swd import swd

    region = copy.deepcopy(config)
    region.data.photo_holdout = 'region'
    pairs = {
        'floor': (draws(config, 'eval', 0, n), draws(config, 'eval_b', 0, n)),
        'train_vs_A': (draws(config, 'train', 0, n), draws(config, 'eval', 0, n)),
        'A_vs_A': (draws(config, 'eval', 0, n), draws(config, 'eval', n, n)),
        'region_floor': (draws(region, 'eval', 0, n), draws(region, 'eval_b', 0, n)),
        'region_train_vs_A': (draws(region, 'train', 0, n), draws(region, 'eval', 0, n)),
    }
    rows = []
    for name, (a, b) in pairs.items():
        t = time.perf_counter()
        r = swd(a, b, seed=1, **swd_kwargs)
        rows.append({'comparison': name, 'n': n, 'swd': r.value, 'se': r.se,
                     'levels': list(r.levels), 'level_se': list(r.level_se),
                     'level_sizes': list(r.level_sizes), 'seconds': time.perf_counter() - t})
        print(f"{config.data.image_size}px n={n} {name}: {r.value:.2f} +- {r.se:.2f} "
              f"({rows[-1]['seconds']:.1f} s)", flush=True)
    return rows


def se_check(config, n: int, repeats: int, swd_kwargs: dict) -> dict:
    """Values and stated SEs of ``repeats`` independent train_vs_A comparisons."""
    import numpy as np

    from evaluation.swd import swd

    values, ses = [], []
    for k in range(repeats):
        r = swd(draws(config, 'train', k * n, n), draws(config, 'eval', k * n, n), seed=k,
                **swd_kwargs)
        values.append(r.value)
        ses.append(r.se)
        print(f'se check {k}: {r.value:.2f} +- {r.se:.2f}', flush=True)
    return {'image_size': config.data.image_size, 'n': n, 'values': values, 'ses': ses,
            'spread': float(np.std(values, ddof=1)), 'mean_se': float(np.mean(ses))}


def markdown(result: dict) -> str:
    lines = ['| patch | n | comparison | SWD x 1e3 | SE | per level (finest first) |',
             '| --- | --- | --- | --- | --- | --- |']
    for row in result['rows']:
        levels = ', '.join(f'{v:.2f}' for v in row['levels'])
        lines.append(f"| {row['image_size']} | {row['n']} | {row['comparison']} | "
                     f"{row['swd']:.2f} | {row['se']:.2f} | {levels} |")
    check = result.get('se_check')
    if check:
        lines.append(f"\nSE check ({check['image_size']}px, n={check['n']}, "
                     f"{len(check['values'])} repeats of train_vs_A): spread (sd) "
                     f"{check['spread']:.2f}, mean stated SE {check['mean_se']:.2f}")
    return '\n'.join(lines) + '\n'


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sizes', type=int, nargs='+', default=[256, 1024])
    p.add_argument('--se-repeats', type=int, default=0)
    p.add_argument('--weighting', choices=('equal', 'area'), default=None)
    p.add_argument('--out', default='benchmarks/results/photo_swd_floor.json')
    add_smoke_flag(p)
    args = p.parse_args()
    swd_kwargs = {}
    configs = CONFIGS
    if args.smoke:  # two small photographs, a few images and directions
        args.sizes = [20]
        args.se_repeats = 2
        configs = CONFIGS[:1]
        swd_kwargs = {'descriptors_per_image': 8, 'num_directions': 16, 'groups': 4}
    rows, check = [], None
    for path in configs:
        config = load_config(path)
        if args.smoke:
            config.data.photos = ('chelsea', 'coffee')
        if args.weighting:
            config.data.photo_weighting = args.weighting
        if args.se_repeats > 1 and check is None:
            check = se_check(config, args.sizes[0], args.se_repeats, swd_kwargs)
        for n in args.sizes:
            for row in comparisons(config, n, swd_kwargs):
                rows.append({'config': path, 'image_size': config.data.image_size, **row})
    result = {'smoke': args.smoke, 'sizes': args.sizes, 'swd_settings': swd_kwargs or 'paper',
              'weighting': args.weighting or 'config',
              'rows': rows, 'se_check': check}
    write_report(args.out, result, markdown(result))


if __name__ == '__main__':
    main()
