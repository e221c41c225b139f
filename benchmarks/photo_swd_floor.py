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

    PYTHONPATH=. python benchmarks/photo_swd_floor.py [--sizes 256 1024]
        [--out benchmarks/results/photo_swd_floor.json] [--smoke]

Writes the JSON and a markdown table next to it (.md).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.population_fd import load_config
from benchmarks.smoke import add_smoke_flag, write_report

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


def markdown(result: dict) -> str:
    lines = ['| patch | n | comparison | SWD x 1e3 | SE | per level (finest first) |',
             '| --- | --- | --- | --- | --- | --- |']
    for row in result['rows']:
        levels = ', '.join(f'{v:.2f}' for v in row['levels'])
        lines.append(f"| {row['image_size']} | {row['n']} | {row['comparison']} | "
                     f"{row['swd']:.2f} | {row['se']:.2f} | {levels} |")
    return '\n'.join(lines) + '\n'


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sizes', type=int, nargs='+', default=[256, 1024])
    p.add_argument('--out', default='benchmarks/results/photo_swd_floor.json')
    add_smoke_flag(p)
    args = p.parse_args()
    swd_kwargs = {}
    configs = CONFIGS
    if args.smoke:  # two small photographs, a few images and directions
        args.sizes = [20]
        configs = CONFIGS[:1]
        swd_kwargs = {'descriptors_per_image': 8, 'num_directions': 16, 'groups': 4}
    rows = []
    for path in configs:
        config = load_config(path)
        if args.smoke:
            config.data.photos = ('chelsea', 'coffee')
        for n in args.sizes:
            for row in comparisons(config, n, swd_kwargs):
                rows.append({'config': path, 'image_size': config.data.image_size, **row})
    result = {'smoke': args.smoke, 'sizes': args.sizes, 'swd_settings': swd_kwargs or 'paper',
              'rows': rows}
    write_report(args.out, result, markdown(result))


if __name__ == '__main__':
    main()
