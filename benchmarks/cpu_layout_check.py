"""Are two training steps bit-identical on 1 process x 4 CPU devices and 2 processes x 2?

XLA:CPU sizes a process's thread pool as max(cores, CPU devices in the process) and splits
loop fusions into that many parallel partitions, which changes some fused reductions' float
order. So the answer depends on the machine: on 2 cores, 1 x 4 gets 4 partitions and 2 x 2
gets 2 (last-bit differences); with 4 or more cores both get the same. This script runs both
layouts (the tiny NCSN++ of configs/tiny/ncsnpp_train.py, 2 steps, ``training.grad_shards``
= 4, same data) and writes the verdict with the core count and the fusion partitioning it saw.

    PYTHONPATH=. python benchmarks/cpu_layout_check.py --out benchmarks/results/cpu_layout.json

``--smoke``: one step of a smaller network (no residual blocks outside the middle), most XLA
optimisations off and the caller's XLA_FLAGS kept; the same verdict fields.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

from benchmarks.smoke import add_smoke_flag, smoke_setup, write_json


def worker(processes: int, pid: int, port: int, out: str, smoke: bool) -> None:
    if smoke:
        smoke_setup()
    import jax

    from pds.runtime import distributed

    launch = distributed.Launch(processes > 1, f'localhost:{port}', processes, pid,
                                4 // processes, 30, 120)
    distributed.initialize(launch)
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from configs.tiny.ncsnpp_train import get_config
    from models.registry import create_model, init_variables
    from pds.method.sde import sde_from_config
    from pds.runtime.mesh import data_mesh, replicate
    from pds.training import losses, train

    config = get_config()
    steps = 2
    if smoke:
        config.model.num_res_blocks, steps = 0, 1
    model, sde = create_model(config), sde_from_config(config)
    variables = init_variables(config, jax.random.key(0))
    xs = np.random.default_rng(0).uniform(0, 1, (steps, 8, 8, 8, 3)).astype(np.float32)
    tx = train.make_optimizer(config)
    mesh = data_mesh()
    step = train.build_train_step(losses.loss_from_config(config, sde, model, True), tx, 0.9,
                                  8, mesh, seed=3, grad_shards=4)
    state = replicate(train.init_state(variables, tx), mesh)
    rows = slice(pid * 8 // processes, (pid + 1) * 8 // processes)
    x = jax.make_array_from_process_local_data(NamedSharding(mesh, P(None, 'data')),
                                               xs[:, rows], xs.shape)
    compiled = step.lower(state, x).compile()  # compiled once: read its HLO, then run it
    parts = sorted(set(re.findall(r'outer_dimension_partitions":\[([^\]]*)\]',
                                  compiled.as_text())))
    state, _ = compiled(state, x)
    leaves = [np.asarray(a.addressable_data(0)) for a in jax.tree_util.tree_leaves(state)]
    if pid == 0:
        np.savez(out, *leaves)
        with open(out + '.json', 'w') as f:
            json.dump({'partitions': parts, 'cpu_count': os.cpu_count(),
                       'affinity': len(os.sched_getaffinity(0))}, f)


def run_layout(processes: int, out: str, smoke: bool) -> None:
    from pds.runtime.distributed import free_port

    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    if not smoke:  # the verdict is XLA's default compilation's; a smoke run keeps the caller's
        env.pop('XLA_FLAGS', None)
    procs = [subprocess.Popen([sys.executable, __file__, '--out', out, '--worker',
                               str(processes), str(i), str(port), out,
                               *(['--smoke'] if smoke else [])], env=env)
             for i in range(processes)]
    for p in procs:
        if p.wait(timeout=600):
            raise SystemExit(f'{processes}-process layout failed (exit {p.returncode})')


def main() -> None:
    import numpy as np

    ap = argparse.ArgumentParser()
    ap.add_argument('--out', required=True)
    ap.add_argument('--worker', nargs=4, help=argparse.SUPPRESS)
    add_smoke_flag(ap)
    a = ap.parse_args()
    if a.worker:
        worker(int(a.worker[0]), int(a.worker[1]), int(a.worker[2]), a.worker[3], a.smoke)
        return
    with tempfile.TemporaryDirectory() as tmp:
        result = {}
        for processes in (1, 2):
            path = os.path.join(tmp, f'{processes}.npz')
            run_layout(processes, path, a.smoke)
            with open(path + '.json') as f:
                result[f'{processes}x{4 // processes}'] = json.load(f)
        a1, a2 = np.load(os.path.join(tmp, '1.npz')), np.load(os.path.join(tmp, '2.npz'))
        differing = [k for k in a1.files if not np.array_equal(a1[k], a2[k])]
        worst = max((float(np.max(np.abs(a1[k] - a2[k]))) for k in differing), default=0.0)
    import jax

    result.update(identical=not differing, differing_leaves=len(differing),
                  total_leaves=len(a1.files), max_abs_difference=worst, jax=jax.__version__,
                  smoke=a.smoke)
    print(json.dumps(result, indent=2))
    write_json(a.out, result)


if __name__ == '__main__':
    main()
