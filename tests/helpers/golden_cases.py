"""The golden runs: a fixed set of small runs whose outputs must not change.

Every run goes through what a user runs, ``main.MODES[mode].run(config, workdir)``, with a
committed config file and flattened overrides, so the cases survive any reorganisation of
the code behind them. Outputs recorded per case (``record.py`` writes them to
``golden.npz``):

- sample: ``raw`` (float32 samples), ``samples`` (the uint8 arrays of the sample files),
  ``index``, the bytes of ``grid.png`` and ``metrics.json`` without its timing fields;
- train: the exported EMA parameters (flattened, sorted by path) and the losses of
  ``train_metrics.jsonl``.

Sampler cases: every predictor x corrector pair, on the VE and the VP SDE, without a
preconditioner and with PDS frequency and space masks (computed from exact field samples),
plus one frequency-mask-only VE run, one NCSN++ network run (random init) and one multi-round
run.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np

from tests.helpers.paths import BASE_XLA_FLAGS, ROOT

FIELD_CONFIG = 'configs/analytic/field_16.py'
NETWORK_CONFIG = 'configs/ve/gaussian_field_16_ncsnpp_small.py'
PREDICTORS = ('reverse_diffusion', 'euler_maruyama', 'ancestral_sampling', 'none')
CORRECTORS = ('langevin', 'ald', 'none')
TIMING_KEYS = ('compile_seconds', 'sampling_seconds', 'seconds_per_iteration', 'steps_per_sec')


def _field_overrides(sde: str, masks: str) -> dict[str, Any]:
    o = {'data.image_size': 8, 'eval.num_samples': 4, 'eval.batch_size': 4,
         'sampling.save_raw': True, 'sampling.pds.num_stat_images': 16}
    if sde == 'vp':  # a VP ladder needs more than beta_max = 20 levels
        o.update({'training.sde': 'vpsde', 'sampling.steps': 24})
    else:
        o.update({'sampling.steps': 5})
    if masks == 'none':
        o['sampling.precondition'] = 'none'
    else:
        o.update({'sampling.precondition': 'pds', 'sampling.pds.freq_mask': 'stats',
                  'sampling.pds.space_mask': 'stats' if masks == 'freq_space' else ''})
    return o


def cases() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """name -> (mode, config file, overrides)."""
    out = {}
    for sde in ('ve', 'vp'):
        for masks in ('none', 'freq_space'):
            for p in PREDICTORS:
                for c in CORRECTORS:
                    o = _field_overrides(sde, masks)
                    o.update({'sampling.predictor': p, 'sampling.corrector': c})
                    out[f'sample/{sde}/{masks}/{p}/{c}'] = ('sample', FIELD_CONFIG, o)
    o = _field_overrides('ve', 'freq')
    o.update({'sampling.n_steps_each': 2, 'sampling.snr': 0.2})
    out['sample/ve/freq/reverse_diffusion/langevin2'] = ('sample', FIELD_CONFIG, o)
    o = _field_overrides('ve', 'freq')
    o.update({'eval.num_samples': 6, 'eval.batch_size': 4, 'seed': 3,
              'sampling.probability_flow': True, 'sampling.predictor': 'reverse_diffusion'})
    out['sample/ve/freq/rounds_probability_flow'] = ('sample', FIELD_CONFIG, o)
    out['sample/network/ncsnpp'] = ('sample', NETWORK_CONFIG, {
        'data.image_size': 8, 'model.nf': 16, 'eval.num_samples': 2, 'eval.batch_size': 2,
        'sampling.steps': 2, 'sampling.save_raw': True, 'sampling.precondition': 'pds',
        'sampling.pds.num_stat_images': 16, 'sampling.allow_random_init': True})
    out['train/network/ncsnpp'] = ('train', NETWORK_CONFIG, {
        'data.image_size': 8, 'model.nf': 16, 'training.batch_size': 4, 'training.n_iters': 4,
        'training.n_jitted_steps': 2, 'training.log_freq': 2, 'training.eval_freq': 4,
        'training.snapshot_freq': 4, 'training.snapshot_freq_for_preemption': 2,
        'training.tensorboard': False, 'optim.warmup': 2})
    return out


def load_config(path: str, overrides: dict[str, Any]):
    spec = importlib.util.spec_from_file_location('golden_config', os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.update_from_flattened_dict(overrides)
    return config


def _mode(name: str):
    import main

    return importlib.import_module(main.MODES[name])


def _strip_timing(obj):
    if isinstance(obj, dict):
        return {k: _strip_timing(v) for k, v in obj.items() if k not in TIMING_KEYS}
    return obj


def _bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.uint8).copy()


def _read(path: str) -> bytes:
    with open(path, 'rb') as f:
        return f.read()


def run_case(name: str, workdir: str) -> dict[str, np.ndarray]:
    """Run one case in ``workdir`` and return its recorded outputs."""
    mode, path, overrides = cases()[name]
    config = load_config(path, overrides)
    _mode(mode).run(config, workdir, overwrite=False)
    if mode == 'sample':
        files = sorted(os.listdir(os.path.join(workdir, 'samples')))
        raw, samples, index = [], [], []
        for f in files:
            if f.endswith('.npz'):
                with np.load(os.path.join(workdir, 'samples', f)) as d:
                    raw.append(d['raw'])
                    samples.append(d['samples'])
                    index.append(d['index'])
        with open(os.path.join(workdir, 'metrics.json')) as f:
            metrics = _strip_timing(json.load(f))
        return {'raw': np.concatenate(raw), 'samples': np.concatenate(samples),
                'index': np.concatenate(index),
                'grid_png': _bytes(_read(os.path.join(workdir, 'samples', 'grid.png'))),
                'metrics': _bytes(json.dumps(metrics, sort_keys=True).encode())}
    out = {}
    with open(os.path.join(workdir, 'train_metrics.jsonl')) as f:
        lines = [_strip_timing(json.loads(line)) for line in f if line.strip()]
    out['train_metrics'] = _bytes(json.dumps(lines, sort_keys=True).encode())
    import orbax.checkpoint as ocp

    ckpt = os.path.join(workdir, 'checkpoints')
    step = max(int(s) for s in os.listdir(ckpt) if s.isdigit())
    tree = ocp.StandardCheckpointer().restore(os.path.join(ckpt, str(step), 'variables'))
    for key, leaf in _flatten(tree):
        out[f'params/{key}'] = np.asarray(leaf)
    return out


def _flatten(tree, prefix: str = ''):
    if isinstance(tree, dict):
        for k in sorted(tree):
            yield from _flatten(tree[k], f'{prefix}{k}/')
    else:
        yield prefix.rstrip('/'), tree


XLA_FLAGS = f'{BASE_XLA_FLAGS} --xla_force_host_platform_device_count=1'  # the suite's


def groups() -> list[list[str]]:
    """The cases in four groups of similar cost (one subprocess each)."""
    names = list(cases())
    samplers = [n for n in names if n.startswith('sample/') and 'network' not in n]
    return [samplers[0::2], samplers[1::2], ['sample/network/ncsnpp'], ['train/network/ncsnpp']]


def fingerprint() -> str:
    """What bit-identity depends on: the jax/jaxlib build, the XLA flags of the runner, the
    core count (XLA:CPU partitions loop fusions by it) and the CPU's vector extensions."""
    import jax
    import jaxlib

    flags = set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    flags = set(line.split(':', 1)[1].split())
                    break
    except OSError:
        pass
    isa = sorted(flags & {'avx', 'avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl',
                          'avx512_bf16', 'amx_bf16', 'sse4_2'})
    return (f'jax {jax.__version__} jaxlib {jaxlib.__version__} {platform.machine()} '
            f'cores {os.cpu_count()} flags {os.environ.get("XLA_FLAGS", "")} {" ".join(isa)}')


def main(argv: list[str]) -> None:
    """``python tests/helpers/golden_cases.py OUT.npz GROUP``: run one group, save its outputs."""
    out, group = argv[1], int(argv[2])
    arrays = {'fingerprint': np.frombuffer(fingerprint().encode(), np.uint8)}
    for name in groups()[group]:
        with tempfile.TemporaryDirectory() as tmp:
            for key, value in run_case(name, tmp).items():
                arrays[f'{name}|{key}'] = value
    np.savez_compressed(out, **arrays)


def run_group(out: str, group: int, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``main`` for ``group`` in a fresh process with the golden XLA flags."""
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu', XLA_FLAGS=XLA_FLAGS)
    return subprocess.run([sys.executable, os.path.abspath(__file__), out, str(group)],
                          env=env, capture_output=True, text=True, timeout=timeout)


if __name__ == '__main__':  # run_group's child process (PYTHONPATH=ROOT)
    from pds.runtime.python_gc import relax_collector

    relax_collector()
    main(sys.argv)
