"""Subprocess driver of test_train.py (configs/tiny/ncsnpp_train.py: a tiny NCSN++ on the
8x8 Gaussian field).

python train_driver.py devices           1-device vs 4-device mesh, two training steps
python train_driver.py run WORKDIR [S]   train RUN_STEPS steps (S: seconds to sleep after each
                                         compiled call); writes WORKDIR/final.npz
"""

import os
import sys
import time

import jax
import numpy as np

from configs.tiny.ncsnpp_train import get_config as tiny_config  # also test_train's
from pds.runtime.python_gc import relax_collector

UPDATE_REL = 2.0**-10  # float32 allowance of the 1- vs 4-device comparison (see devices)
RUN_STEPS = 16  # of `run`: snapshots at 8 and 16, a preemption checkpoint every 4 steps


def small_config():
    """The tiny config without residual blocks outside the middle (a quarter less to trace
    and compile; the same model family and training step)."""
    config = tiny_config()
    config.model.num_res_blocks = 0
    return config


def run_config():
    """``small_config`` shortened to RUN_STEPS steps."""
    config = small_config()
    config.training.n_iters = RUN_STEPS
    config.training.snapshot_freq = config.training.eval_freq = RUN_STEPS // 2
    return config


def devices() -> None:
    """One step on meshes of 1, 2 and 4 devices with 4 gradient microbatches (the k-step scan
    around it is the same code on every mesh; `run` trains through it)."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from models.registry import create_model, init_variables
    from pds.method.sde import sde_from_config
    from pds.runtime.mesh import data_mesh, replicate
    from pds.training import losses, train

    assert jax.device_count() == 4, jax.devices()
    config = small_config()
    config.optim.warmup = 0
    model, sde = create_model(config), sde_from_config(config)
    variables = init_variables(config, jax.random.key(0))
    xs = np.random.default_rng(0).uniform(0, 1, (1, 8, 8, 8, 3)).astype(np.float32)
    tx = train.make_optimizer(config)
    out = {}
    for n in (1, 2, 4):
        mesh = data_mesh(jax.devices()[:n])
        step = train.build_train_step(losses.loss_from_config(config, sde, model, True), tx,
                                      0.9, 8, mesh, seed=3, grad_shards=4)
        state = replicate(train.init_state(variables, tx), mesh)
        x = jax.device_put(xs, NamedSharding(mesh, P(None, 'data')))
        state, loss = step(state, x)
        out[n] = (train.host_tree(state), np.asarray(loss))
    for n in (1, 2):
        assert np.array_equal(out[n][1], out[4][1]), (n, out[n][1], out[4][1])
    for a, b in zip(jax.tree_util.tree_leaves(out[2][0]), jax.tree_util.tree_leaves(out[4][0])):
        assert np.array_equal(a, b), np.max(np.abs(np.asarray(a, np.float64) - b))
    # 1 vs 4 devices: XLA compiles one-partition programs with other algebraic rewrites
    # (pds/training/train.py), so gradients differ by float32 rounding of their reductions:
    # ~sqrt(n) eps32 of sum |terms| for n = B H W C summands (~2^-17 at n = 1536), larger
    # relative to a gradient that cancels. Adam divides by sqrt(v), so that relative error
    # reaches the update itself. Per leaf the bound is UPDATE_REL = 2^-10 of its largest update
    # over the step (2^7 left for cancellation), plus the rounding of the parameter
    # (4 eps32 max |p|) and an absolute 8 eps32 lr for leaves whose gradient is itself rounding
    # noise (Adam then moves them by lr g / adam_eps, which differs at that scale).
    start = train.host_tree(train.init_state(variables, tx))
    eps32, lr = float(np.finfo(np.float32).eps), float(config.optim.lr)
    worst = 0.0
    for a, b, p0 in zip(jax.tree_util.tree_leaves(out[1][0]), jax.tree_util.tree_leaves(out[4][0]),
                        jax.tree_util.tree_leaves(start)):
        b = np.asarray(b, np.float64)
        update = float(np.max(np.abs(b - p0), initial=0))
        bound = (UPDATE_REL * update + 4 * eps32 * float(np.max(np.abs(b), initial=0))
                 + 8 * eps32 * lr)
        worst = max(worst, float(np.max(np.abs(np.asarray(a, np.float64) - b), initial=0)) / bound)
    print(f'2 vs 4 devices identical; 1 vs 4 devices: worst difference {worst:.3g} of the bound')
    assert worst <= 1.0, worst
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(
        jax.tree_util.tree_leaves(out[4][0].params),
        jax.tree_util.tree_leaves(variables['params'])))
    assert moved > 1e-4, moved  # the steps did change the parameters
    print('ok')


def run(workdir: str, pause: float) -> None:
    from pds.modes import train as train_mode
    from pds.storage.training_checkpoints import TrainCheckpoints, flatten_state

    found = TrainCheckpoints(workdir).candidates()
    print('start_step', found[0][0] if found else 0, flush=True)
    hook = (lambda step: time.sleep(pause)) if pause > 0 else None
    train_mode.run(run_config(), workdir, on_chunk=hook)
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from pds.runtime.mesh import data_mesh

    template = _template()
    mesh = data_mesh()
    ckpts = TrainCheckpoints(workdir)
    state = ckpts.restore_step(RUN_STEPS, 'snapshots', template, NamedSharding(mesh, P()))
    leaves, _ = flatten_state(jax.device_get(state))
    np.savez(os.path.join(workdir, 'final.npz'), **leaves)
    print('done', flush=True)


def _template():
    from models.registry import init_variables
    from pds.training import train

    config = run_config()
    return train.init_state(init_variables(config, jax.random.key(0)),
                            train.make_optimizer(config))


if __name__ == '__main__':
    relax_collector()
    if sys.argv[1] == 'devices':
        devices()
    else:
        run(sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
