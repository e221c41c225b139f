"""FID Inception throughput (images/s) at a fixed batch on the default JAX backend.

Random weights (throughput does not depend on their values); 32x32 uint8 inputs resized to
299x299 inside the jitted function, as in ``evaluation.metrics.features``. Compilation and
one warm-up call are excluded from the timing. Writes
``benchmarks/results/inception_throughput.json``.

    python benchmarks/inception_throughput.py [--batch 50] [--iters 3] [--smoke --out F]

``--smoke``: batch 1, one timed call, on the CPU, with parameters drawn from the shapes
(``param_shapes``) instead of the network's initialiser, which runs op by op for a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.smoke import add_smoke_flag, smoke_setup, write_json  # noqa: E402
from evaluation.inception import (  # noqa: E402
    RESIZE_POLICY,
    init_params,
    make_apply_fn,
    param_shapes,
    unflatten,
)


def quick_params(seed: int = 0) -> dict:
    """Random parameters of the right tree from the shapes alone (no initialiser run)."""
    rng = np.random.default_rng(seed)
    return unflatten({k: (0.01 * rng.standard_normal(shape)).astype(np.float32)
                      for k, shape in param_shapes().items()})


def measure(batch: int, iters: int, image_size: int = 32, quick: bool = False) -> dict:
    """Median and mean seconds per batch over ``iters`` timed calls, and images/s."""
    params = quick_params(seed=0) if quick else init_params(seed=0)
    apply = make_apply_fn(resize=True, with_logits=True)
    rng = np.random.default_rng(0)
    images = jax.device_put(rng.integers(0, 256, (batch, image_size, image_size, 3), np.uint8))
    t0 = time.perf_counter()
    jax.block_until_ready(apply(params, images))  # compile + first run
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        jax.block_until_ready(apply(params, images))
        times.append(time.perf_counter() - t)
    median = float(np.median(times))
    return {
        'batch': batch, 'iters': iters, 'input_size': image_size, 'resize': RESIZE_POLICY,
        'compile_plus_first_call_s': round(compile_s, 3),
        'batch_seconds': [round(t, 4) for t in times], 'median_batch_s': round(median, 4),
        'images_per_s': round(batch / median, 2),
        'backend': jax.default_backend(), 'device': str(jax.devices()[0]),
        'jax': jax.__version__, 'cpu_count': os.cpu_count(), 'machine': platform.machine(),
        # other processes compete for the cores when this is well above 1
        'load_average_1min_after': round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=50)
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--out', default=str(ROOT / 'benchmarks/results/inception_throughput.json'))
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke_setup()
        args.batch, args.iters = 1, 1
    result = measure(args.batch, args.iters, quick=args.smoke)
    result['smoke'] = args.smoke
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
