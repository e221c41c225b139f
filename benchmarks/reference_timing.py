"""Ours against the reference PDS implementation (fudan-zvg/PDS, PyTorch) on one machine.

Same network config, same batch, random weights. Per case it reports both implementations'
seconds per NFE (one score evaluation), seconds per predictor-corrector iteration
(reverse diffusion + Langevin, 2 NFE) without and with PDS (frequency + space masks), the
set-up time (ours: the jit compiles; the reference: its first call), peak memory and the
parameter counts (equal, or the networks differ and the case is flagged).

    PYTHONPATH=. python benchmarks/reference_timing.py --reference-dir /path/to/PDS \\
        [--cases cifar10_deep:1,cifar10_deep:8] [--dtypes float32] [--out FILE]

The reference is a local checkout of https://github.com/fudan-zvg/PDS, kept outside this
repository (nothing of it is copied here). Its modules are imported in a child process from
that folder, with two adaptations made there at run time, both recorded in the output:
``torch.utils.cpp_extension.load`` returns a placeholder (its ``op/`` CUDA extensions are not
built), so ``upfirdn2d`` takes the reference's own pure-PyTorch ``upfirdn2d_native`` path on
every device (the path it takes on the CPU anyway); and on a machine without CUDA,
``torch.cuda.FloatTensor``, which its predictor and corrector hard-code, names the CPU
``torch.FloatTensor``. The predictor and corrector timed are the reference's own
``shared_predictor_update_fn`` / ``shared_corrector_update_fn``; with no masks they are called
with the reference's own defaults (``space_mask`` a tensor of ones, ``freq_mask`` 1), so its
baseline iteration still runs its eight FFTs, as it does in the reference sampler.

Each implementation runs in its own long-lived child process (its peak memory is its own);
the parent alternates the timed calls between the two (ours first on even repeats, the
reference first on odd), so both see the same machine load, and reports medians and the
ratio ``reference seconds / our seconds`` (> 1: ours is faster) from the same run.
Without ``--reference-dir`` only ours is timed. ``--smoke``: an 8 x 8 one-resolution network,
batch 1, 1 iteration, 1 repeat, on the CPU (the reference too, when given).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

from benchmarks.smoke import add_smoke_flag, apply_smoke_size, tiny_network, write_json

# name -> (our config module, the reference's default-config module for its non-model fields)
CONFIGS = {
    'cifar10_deep': ('configs.ve.cifar10_ncsnpp_deep_continuous', 'default_cifar10_configs'),
    'ffhq_256': ('configs.ve.ffhq_256_ncsnpp_continuous', 'default_lsun_configs'),
    'ffhq_1024': ('configs.ve.ffhq_ncsnpp_continuous', 'default_lsun_configs'),
}
DEFAULT_CASES = 'cifar10_deep:1,cifar10_deep:8'
TIMED = ('nfe', 'pc', 'pc_pds')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def our_config(name: str, dtype: str, iterations: int, smoke: bool):
    import importlib

    config = importlib.import_module(CONFIGS[name][0]).get_config()
    config.model.dtype = dtype
    config.sampling.steps = iterations
    config.sampling.predictor, config.sampling.corrector = 'reverse_diffusion', 'langevin'
    if smoke:
        tiny_network(config)
    return config


def network_fields(config) -> dict:
    """The fields that define the network, the SDE and the image: what the reference child
    copies onto its own default config so that both build the same NCSN++."""
    model = {k: v for k, v in config.model.items() if k != 'dtype'}
    model = {k: list(v) if isinstance(v, tuple) else v for k, v in model.items()}
    data = {k: config.data[k] for k in ('image_size', 'num_channels', 'centered')}
    return {'model': model, 'data': data, 'snr': float(config.sampling.snr)}


def peak_rss_bytes() -> int:
    """This process's peak resident set size (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ------------------------------------------------------------------ ours (child process)

class Ours:
    """Our compiled score forward and PC samplers (baseline, PDS) for one case."""

    def __init__(self, name: str, batch: int, dtype: str, iterations: int, smoke: bool):
        import jax
        import numpy as np

        from benchmarks.gpu_check import random_pds
        from pds.experiment.assemble import experiment_from_config
        from pds.method.precondition import Identity
        from pds.runtime.mesh import data_mesh, replicate
        from pds.sampling.sampler import build_sampler
        from pds.sampling.solver import solver_from_config

        self.jax = jax
        config = our_config(name, dtype, iterations, smoke)
        t0 = time.perf_counter()
        exp = experiment_from_config(config)  # no workdir: random init
        mesh = data_mesh()
        self.variables = replicate(exp.variables, mesh)
        self.info = {'implementation': 'ours', 'jax': jax.__version__,
                     'device': jax.devices()[0].device_kind,
                     'parameters': int(sum(np.size(p) for p in
                                           jax.tree.leaves(exp.variables['params']))),
                     'init_seconds': time.perf_counter() - t0}
        x = jax.random.normal(jax.random.key(0), (batch, *exp.image_shape))
        t = jax.numpy.full((batch,), 0.5)
        # the variables are an argument, as in the sampler (closed over, XLA would fold them)
        forward = jax.jit(lambda v, x, t: exp.score_builder(exp.sde, v)(x, t))
        forward = forward.lower(self.variables, x, t)
        t0 = time.perf_counter()
        forward = forward.compile()
        self.info['forward_compile_seconds'] = time.perf_counter() - t0
        self.calls = {'nfe': lambda: forward(self.variables, x, t)}
        solver = solver_from_config(config, exp.sde)
        for label, precond in (('pc', Identity()), ('pc_pds', random_pds(exp.image_shape))):
            s = build_sampler(exp.sde, exp.grid, exp.score_builder, exp.image_shape, batch,
                              mesh, solver)
            p = replicate(precond, mesh)
            self.info[f'{label}_compile_seconds'] = s.compile(self.variables, p)
            nfe = float(np.mean(s.run(self.variables, p, 0)[1]))
            self.info[f'{label}_nfe_per_iteration'] = nfe / iterations
            self.calls[label] = lambda s=s, p=p: s(self.variables, p, 0)
        for fn in self.calls.values():  # warm: first calls allocate
            jax.block_until_ready(fn())

    def time(self, what: str) -> float:
        t0 = time.perf_counter()
        self.jax.block_until_ready(self.calls[what]())
        return time.perf_counter() - t0

    def memory(self) -> dict:
        stats = self.jax.devices()[0].memory_stats() or {}
        return {'peak_device_bytes': stats.get('peak_bytes_in_use'),
                'peak_rss_bytes': peak_rss_bytes()}


# ------------------------------------------------------- the reference (child process)

class Reference:
    """The reference's NCSN++ and its PC predictor/corrector for one case (NCHW tensors)."""

    def __init__(self, name: str, batch: int, dtype: str, iterations: int, smoke: bool,
                 reference_dir: str, fields: dict):
        import importlib
        import importlib.util
        import types

        import ml_collections
        import numpy as np
        import torch
        import torch.utils.cpp_extension as cpp_extension

        if dtype != 'float32':
            raise ValueError(f'reference dtype {dtype!r}: the reference runs float32 only')
        cpp_extension.load = lambda *a, **k: types.SimpleNamespace()  # see module docstring
        adaptations = ['op/ CUDA extensions not built: upfirdn2d runs upfirdn2d_native']
        self.cuda = torch.cuda.is_available()
        if not self.cuda:
            torch.cuda.FloatTensor = torch.FloatTensor
            adaptations.append('torch.cuda.FloatTensor -> torch.FloatTensor')
        sys.path.insert(0, os.path.abspath(reference_dir))  # its models/configs before ours
        upfirdn = importlib.import_module('op.upfirdn2d')
        upfirdn.upfirdn2d = self._native(upfirdn)
        importlib.import_module('models.up_or_down_sampling').upfirdn2d = upfirdn.upfirdn2d
        # by path: its configs/ has no __init__.py, so `import configs` would find ours
        path = os.path.join(reference_dir, 'configs', CONFIGS[name][1] + '.py')
        spec = importlib.util.spec_from_file_location('reference_default_config', path)
        defaults = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(defaults)
        importlib.import_module('models.ncsnpp')  # registers 'ncsnpp'
        mutils = importlib.import_module('models.utils')
        sde_lib = importlib.import_module('sde_lib')
        self.sampling = importlib.import_module('sampling')
        self.torch = torch

        config = defaults.get_default_configs()
        for block in ('model', 'data'):
            ours = {k: tuple(v) if isinstance(v, list) else v  # ours-only fields unread
                    for k, v in fields[block].items()}
            config[block] = ml_collections.ConfigDict({**config[block].to_dict(), **ours})
        config.sampling.snr = fields['snr']
        t0 = time.perf_counter()
        torch.manual_seed(0)
        model = mutils.create_model(config)
        model.eval()
        m = config.model
        self.sde = sde_lib.VESDE(m.sigma_min, m.sigma_max, iterations)
        self.model = model
        c, s = config.data.num_channels, config.data.image_size
        self.info = {'implementation': 'reference', 'torch': torch.__version__,
                     'cuda': torch.version.cuda,
                     'device': torch.cuda.get_device_name(0) if self.cuda else 'cpu',
                     'torch_threads': torch.get_num_threads(),
                     'parameters': int(sum(p.numel() for p in model.parameters())),
                     'init_seconds': time.perf_counter() - t0,
                     'adaptations': adaptations}
        device = config.device
        self.device = device
        score_fn = mutils.get_score_fn(self.sde, model, train=False, continuous=True)
        x = torch.randn(batch, c, s, s, device=device)
        t = torch.full((batch,), 0.5, device=device)
        rng = np.random.default_rng(0)  # any positive gains: the timing ignores their values
        masks = [torch.from_numpy(rng.uniform(0.5, 2.0, (1, c, s, s)).astype(np.float32))
                 .to(device) for _ in range(2)]
        no_masks = (torch.ones(1, device=device), 1)  # the reference's defaults
        timesteps = torch.linspace(self.sde.T, 1e-5, iterations, device=device)
        self.calls = {'nfe': lambda: score_fn(x, t),
                      'pc': lambda: self._pc(x, timesteps, *no_masks, config),
                      'pc_pds': lambda: self._pc(x, timesteps, *masks, config)}
        for what, fn in self.calls.items():  # the first call is the reference's warm-up
            self.info[f'{what}_first_call_seconds'] = self._timed(fn)

    @staticmethod
    def _native(upfirdn):
        def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
            return upfirdn.upfirdn2d_native(x, kernel, up, up, down, down, pad[0], pad[1],
                                            pad[0], pad[1])
        return upfirdn2d

    def _pc(self, x, timesteps, space_mask, freq_mask, config):
        s = self.sampling
        for t in timesteps:
            vec_t = self.torch.ones(x.shape[0], device=self.device) * t
            x, _ = s.shared_corrector_update_fn(
                x, vec_t, sde=self.sde, model=self.model, corrector=s.LangevinCorrector,
                continuous=True, snr=config.sampling.snr, n_steps=1, space_mask=space_mask,
                freq_mask=freq_mask)
            x, _ = s.shared_predictor_update_fn(
                x, vec_t, sde=self.sde, model=self.model,
                predictor=s.ReverseDiffusionPredictor, probability_flow=False,
                continuous=True, space_mask=space_mask, freq_mask=freq_mask)
        return x

    def _timed(self, fn) -> float:
        with self.torch.no_grad():
            if self.cuda:
                self.torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if self.cuda:
                self.torch.cuda.synchronize()
            return time.perf_counter() - t0

    def time(self, what: str) -> float:
        return self._timed(self.calls[what])

    def memory(self) -> dict:
        dev = self.torch.cuda.max_memory_allocated() if self.cuda else None
        return {'peak_device_bytes': dev, 'peak_rss_bytes': peak_rss_bytes()}


def child(args) -> None:
    """Serve one implementation: build it, print its info, then answer one timed call per
    command line ('nfe' | 'pc' | 'pc_pds' | 'memory') until stdin closes."""
    spec = json.loads(args.child)
    if spec['implementation'] == 'ours':
        impl = Ours(spec['name'], spec['batch'], spec['dtype'], spec['iterations'],
                    spec['smoke'])
    else:
        impl = Reference(spec['name'], spec['batch'], spec['dtype'], spec['iterations'],
                         spec['smoke'], spec['reference_dir'], spec['fields'])
    print('RESULT ' + json.dumps(impl.info), flush=True)
    for line in sys.stdin:
        what = line.strip()
        out = impl.memory() if what == 'memory' else impl.time(what)
        print('RESULT ' + json.dumps(out), flush=True)


# ------------------------------------------------------------------------ the parent

class Worker:
    """A child process serving one implementation over stdin/stdout."""

    def __init__(self, spec: dict, smoke: bool):
        cmd = [sys.executable, os.path.abspath(__file__), '--child', json.dumps(spec)]
        cmd += ['--smoke'] if smoke else []
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [ROOT, *filter(None, [os.environ.get('PYTHONPATH')])]))
        env.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')  # the two share a GPU
        self.name = spec['implementation']
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, cwd=ROOT)
        self.info = self._read()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith('RESULT '):
                return json.loads(line[len('RESULT '):])
        self.proc.wait()
        raise RuntimeError(f'{self.name} child exited with code {self.proc.returncode} '
                           '(its stderr is above)')

    def ask(self, what: str):
        self.proc.stdin.write(what + '\n')
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def run_case(name: str, batch: int, dtype: str, iterations: int, repeats: int,
             reference_dir: str | None, smoke: bool) -> dict:
    spec = {'name': name, 'batch': batch, 'dtype': dtype, 'iterations': iterations,
            'smoke': smoke}
    out = {'config': name, 'batch': batch, 'dtype': dtype, 'iterations': iterations}
    workers = [Worker(dict(spec, implementation='ours'), smoke)]
    if reference_dir and dtype == 'float32':
        fields = network_fields(our_config(name, dtype, iterations, smoke))
        workers.append(Worker(dict(spec, implementation='reference',
                                   reference_dir=reference_dir, fields=fields), smoke))
    times = {w.name: {what: [] for what in TIMED} for w in workers}
    try:
        for r in range(repeats):
            order = workers if r % 2 == 0 else workers[::-1]
            for what in TIMED:
                for w in order:
                    times[w.name][what].append(w.ask(what))
        for w in workers:
            med = {what: statistics.median(ts) for what, ts in times[w.name].items()}
            out[w.name] = dict(w.info, **w.ask('memory'), seconds=times[w.name],
                               seconds_per_nfe=med['nfe'],
                               seconds_per_iteration=med['pc'] / iterations,
                               seconds_per_iteration_pds=med['pc_pds'] / iterations)
    finally:
        for w in workers:
            w.close()
    if 'reference' in out:
        ours, ref = out['ours'], out['reference']
        out['same_network'] = ours['parameters'] == ref['parameters']
        out['speedup'] = {k: ref[k] / ours[k] for k in (
            'seconds_per_nfe', 'seconds_per_iteration', 'seconds_per_iteration_pds')}
    return out


def markdown(result: dict) -> str:
    lines = [f"Machine: {result['machine']}; jax {result['jax']}, torch {result['torch']}.",
             '', '| config | batch | dtype | s/NFE ours | s/NFE ref | PC iter ours | '
             'PC iter ref | PDS iter ours | PDS iter ref | speed-up NFE / PC / PDS |',
             '|---|---:|---|---:|---:|---:|---:|---:|---:|---|']

    def f(case, impl, key):
        return f"{case[impl][key]:.4g}" if impl in case else '-'

    for c in result['cases']:
        if 'error' in c:
            lines.append(f"| {c['config']} | {c['batch']} | {c['dtype']} | error: "
                         f"{c['error'].splitlines()[-1] if c['error'] else ''} |")
            continue
        sp = c.get('speedup')
        sp = ' / '.join(f'{v:.2f}x' for v in sp.values()) if sp else '-'
        cells = [f(c, impl, key) for key in ('seconds_per_nfe', 'seconds_per_iteration',
                                             'seconds_per_iteration_pds')
                 for impl in ('ours', 'reference')]
        lines.append(f"| {c['config']} | {c['batch']} | {c['dtype']} | {' | '.join(cells)} "
                     f"| {sp} |")
    return '\n'.join(lines) + '\n'


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reference-dir', help='a local checkout of fudan-zvg/PDS')
    p.add_argument('--cases', default=DEFAULT_CASES, help='name:batch,... of ' + ', '.join(
        CONFIGS))
    p.add_argument('--dtypes', default='float32', help='float32,bfloat16 (ours only)')
    p.add_argument('--iterations', type=int, default=2, help='PC iterations per timed call')
    p.add_argument('--repeats', type=int, default=5, help='timed calls per quantity')
    p.add_argument('--out', default='benchmarks/results/reference_timing_cpu.json')
    p.add_argument('--child', help=argparse.SUPPRESS)
    add_smoke_flag(p)
    args = p.parse_args()
    apply_smoke_size(args, DEFAULT_CASES, 'cifar10_deep:1')
    if args.child:
        child(args)
        return
    if args.reference_dir and not os.path.isfile(
            os.path.join(args.reference_dir, 'sampling.py')):
        sys.exit(f'--reference-dir {args.reference_dir!r}: not a checkout of fudan-zvg/PDS '
                 '(no sampling.py there)')
    cases = []
    for spec in args.cases.split(','):
        name, _, batch = spec.partition(':')
        if name not in CONFIGS or not batch.isdigit() or int(batch) < 1:
            sys.exit(f'--cases {spec!r}: expected name:batch with name one of '
                     f'{sorted(CONFIGS)} and batch a positive integer')
        cases.append((name, int(batch)))
    for dtype in args.dtypes.split(','):
        if dtype not in ('float32', 'bfloat16'):
            sys.exit(f"--dtypes {dtype!r}: expected 'float32' or 'bfloat16'")
    import jax

    try:  # the installed version, without the seconds that importing torch takes
        torch_version = importlib.metadata.version('torch')
    except importlib.metadata.PackageNotFoundError:
        torch_version = None
        if args.reference_dir:
            sys.exit('--reference-dir needs torch (pip install -r requirements-test.txt)')
    result = {'machine': f'{platform.node()} ({os.cpu_count()} cores)',
              'cpu_count': os.cpu_count(), 'jax': jax.__version__, 'torch': torch_version,
              'reference_dir': args.reference_dir, 'cases': []}
    t_start = time.perf_counter()
    for name, batch in cases:
        for dtype in args.dtypes.split(','):
            try:
                case = run_case(name, batch, dtype, args.iterations, args.repeats,
                                args.reference_dir, args.smoke)
            except RuntimeError as e:  # a child died: record it and go on
                case = {'config': name, 'batch': batch, 'dtype': dtype, 'error': str(e)}
            result['cases'].append(case)
            result['wall_seconds'] = time.perf_counter() - t_start
            write_json(args.out, result)
            print(json.dumps({k: v for k, v in case.items() if k != 'seconds'}), flush=True)
    with open(os.path.splitext(args.out)[0] + '.md', 'w') as f:
        f.write(markdown(result))
    print(markdown(result))


if __name__ == '__main__':
    main()
