"""Training-step throughput of CIFAR-10 NCSN++ (score_sde's config) on one accelerator, and
the cost of the fixed-order microbatched gradient (``training.grad_shards``, pds/training/train.py).

For each G in ``--shards`` it builds the compiled training step (batch 128, ``n_jitted_steps``
steps per call, random data, Adam + EMA as score_sde) and records the compile time, the
seconds per optimizer step (best of ``--repeats`` calls after a warm-up) and the peak device
memory. G = 1 is the default on one device (one gradient of the whole batch); G = 8 computes
eight microbatch gradients of 16 and adds them in the fixed tree, the setting that makes 1, 2,
4 and 8-device runs comparable. Each case runs in its own process (its own peak memory).

    PYTHONPATH=. python benchmarks/train_step_gpu.py --out benchmarks/results/train_step_gpu.json
    PYTHONPATH=. python benchmarks/train_step_gpu.py --tiny --out /tmp/t.json   # small network
    PYTHONPATH=. python benchmarks/train_step_gpu.py --smoke --out /tmp/t.json  # CPU, seconds

``--smoke`` runs the same logic on the CPU at toy size: G = 1 in its own process, batch 4, an
8 x 8 one-resolution network, one step per call, one timed call.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np

from benchmarks.smoke import add_smoke_flag, smoke_setup, tiny_network, write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_case(shards: int, batch: int, jitted: int, repeats: int, tiny: bool,
             smoke: bool = False) -> dict:
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from configs.ve import cifar10_ncsnpp_continuous
    from pds.method.sde import sde_from_config
    from pds.runtime.mesh import DATA_AXIS, data_mesh, replicate
    from pds.training import losses, train

    config = cifar10_ncsnpp_continuous.get_config()
    if smoke:
        tiny_network(config)
    elif tiny:
        config.model.nf, config.model.ch_mult = 16, (1, 2)
        config.model.num_res_blocks, config.model.attn_resolutions = 1, ()
        config.data.image_size = 16
    model, variables = train.model_variables(config, jax.random.key(0))
    sde = sde_from_config(config)
    tx = train.make_optimizer(config)
    mesh = data_mesh()
    step = train.build_train_step(losses.loss_from_config(config, sde, model, True), tx,
                                  train.ema_rate(config), batch, mesh, seed=0,
                                  grad_shards=shards)
    size = config.data.image_size
    xs = np.random.default_rng(0).uniform(-1, 1, (jitted, batch, size, size, 3))
    xs = jax.device_put(xs.astype(np.float32), NamedSharding(mesh, P(None, DATA_AXIS)))
    state = replicate(train.init_state(variables, tx), mesh)
    t0 = time.perf_counter()
    state, loss = step(state, xs)
    jax.block_until_ready(loss)
    compile_s = time.perf_counter() - t0
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, loss = step(state, xs)
        jax.block_until_ready(loss)
        best = min(best, time.perf_counter() - t0)
    stats = jax.devices()[0].memory_stats() or {}
    return {'grad_shards': shards, 'batch': batch, 'n_jitted_steps': jitted,
            'compile_plus_first_call_seconds': round(compile_s, 2),
            'seconds_per_step': round(best / jitted, 5),
            'steps_per_second': round(jitted / best, 2),
            'peak_bytes': stats.get('peak_bytes_in_use'),
            'final_loss': float(np.asarray(loss)[-1]),
            'device': str(jax.devices()[0].device_kind), 'tiny': tiny, 'smoke': smoke}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument('--out', required=True)
    p.add_argument('--shards', default='1,8')
    p.add_argument('--batch', type=int, default=128)
    p.add_argument('--jitted', type=int, default=5)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--tiny', action='store_true')
    p.add_argument('--case', type=int, default=None, help=argparse.SUPPRESS)
    add_smoke_flag(p)
    a = p.parse_args()
    if a.smoke:
        smoke_setup()
        a.shards, a.batch, a.jitted, a.repeats = '1', 4, 1, 1
    if a.case is not None:
        print(json.dumps(run_case(a.case, a.batch, a.jitted, a.repeats, a.tiny, a.smoke)),
              flush=True)
        return
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT, *filter(None, [os.environ.get('PYTHONPATH')])]))
    rows = []
    for g in [int(v) for v in a.shards.split(',')]:
        cmd = [sys.executable, __file__, '--out', a.out, '--case', str(g), '--batch',
               str(a.batch), '--jitted', str(a.jitted), '--repeats', str(a.repeats)]
        cmd += ['--tiny'] if a.tiny else []
        cmd += ['--smoke'] if a.smoke else []
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode:
            rows.append({'grad_shards': g, 'error': res.stderr[-2000:]})
        else:
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    base = next((r for r in rows if r.get('grad_shards') == 1 and 'error' not in r), None)
    for r in rows:
        if base is not None and 'error' not in r:
            r['time_vs_G1'] = round(r['seconds_per_step'] / base['seconds_per_step'], 3)
    write_json(a.out, {'config': 've/cifar10_ncsnpp_continuous', 'jax': jax.__version__,
                       'rows': rows})


if __name__ == '__main__':
    main()
