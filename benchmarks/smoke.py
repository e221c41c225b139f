"""What the benchmark scripts share for their ``--smoke`` size.

``--smoke`` runs a script's whole logic (every phase, every output field) at a toy size on the
CPU: tiny images and networks, one or two sampler iterations, one repeat, results to the path
given by ``--out``. It takes seconds, measures nothing, and is what
``tests/benchmarks/test_smoke.py`` runs. Without ``--smoke`` a script behaves as before.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os

SMOKE_HELP = ('toy sizes on the CPU (tiny images and networks, a couple of steps, one '
              'repeat): checks the script end to end in seconds; measures nothing')


def add_smoke_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--smoke', action='store_true', help=SMOKE_HELP)


def smoke_setup() -> None:
    """Run JAX on the CPU with most XLA optimisations off (they double the compile time of
    these toy programs), here and in child processes, and relax Python's garbage collector
    (``pds.runtime.python_gc``). Call before JAX picks a backend."""
    os.environ['JAX_PLATFORMS'] = 'cpu'
    os.environ['JAX_DISABLE_MOST_OPTIMIZATIONS'] = '1'
    import jax

    jax.config.update('jax_platforms', 'cpu')
    jax.config.update('jax_disable_most_optimizations', True)
    from pds.runtime.python_gc import relax_collector

    relax_collector()  # toy programs: tracing is much of their time


def apply_smoke_size(args: argparse.Namespace, default_cases: str, smoke_cases: str) -> None:
    """At ``--smoke``: the CPU set-up, one iteration and one repeat, and ``smoke_cases`` in
    place of ``args.cases`` unless the command line changed it from ``default_cases``."""
    if not args.smoke:
        return
    smoke_setup()
    args.iterations, args.repeats = 1, 1
    if args.cases == default_cases:
        args.cases = smoke_cases


def tiny_network(config, image_size: int = 8) -> None:
    """Shrink a score network config in place: one resolution of 8 channels, no residual
    blocks besides the middle and output ones, no attention at any resolution (the same model
    family and code path; it compiles in a few seconds on the CPU)."""
    model = config.model
    model.nf = 8
    model.ch_mult = (1,)
    model.num_res_blocks = 0
    model.attn_resolutions = ()
    config.data.image_size = image_size


def write_json(path: str, result: dict, indent: int = 2) -> None:
    """Write ``result`` to ``path`` (creating its folder)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, 'w') as f:
        json.dump(result, f, indent=indent, default=float)


def write_report(path: str, result: dict, markdown: str) -> None:
    """``result`` as JSON at ``path``, ``markdown`` beside it (.md), and the markdown printed."""
    write_json(path, result)
    with open(os.path.splitext(path)[0] + '.md', 'w') as f:
        f.write(markdown)
    print(markdown)


def load_config(path: str):
    """``get_config()`` of the config file ``path`` (relative to the repository root)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location('bench_config', os.path.join(root, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def sampled_field_main(doc: str, out: str, run, markdown) -> None:
    """The command line of a benchmark that samples a field config: ``--config`` (the 16x16
    field), ``--samples``, ``--batch``, ``--out`` and ``--smoke`` (8 x 8, 16 samples); calls
    ``run(config, samples, batch, smoke) -> result`` and writes ``result`` with
    ``markdown(result)`` next to it."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument('--config', default='configs/analytic/field_16.py')
    p.add_argument('--samples', type=int, default=1024)
    p.add_argument('--batch', type=int, default=512)
    p.add_argument('--out', default=out)
    add_smoke_flag(p)
    args = p.parse_args()
    if args.smoke:
        smoke_setup()
    config = load_config(args.config)
    samples, batch = args.samples, args.batch
    if args.smoke:
        config.data.image_size, samples, batch = 8, 16, 16
    result = run(config, samples, batch, args.smoke)
    result['config'] = args.config
    write_report(args.out, result, markdown(result))
