"""The compiled training step: optax Adam with warmup and clipping, EMA, data-parallel scan.

One call of the step runs ``k`` optimizer steps as a ``lax.scan`` inside one ``jax.jit``
(unrolled on CPU, see :func:`unroll_steps`),
sharded over the device mesh of :mod:`pds.runtime.mesh` with ``shard_map``: the state is
replicated (``P()``), the stacked batches (k, B, H, W, C) are split on the batch axis
(``P(None, 'data')``), and gradients are summed over devices in a fixed order (below).

Optimizer (score_sde's ``optimization_manager``): at step s (the number of earlier updates)

    g  <- g * c / max(||g||_2, c)                 (global-norm clipping, c = optim.grad_clip >= 0)
    lr_s = optim.lr * min(s / optim.warmup, 1)     (linear warmup; constant lr if warmup <= 0)
    theta <- Adam(b1 = optim.beta1, b2 = 0.999, eps = optim.eps)
             (AdamW with decoupled decay lr_s * weight_decay * theta when weight_decay != 0)
    ema   <- ema_rate * ema + (1 - ema_rate) * theta  (after the update; ema_0 = theta_0)

Reproducibility: example b of the global batch at step s draws its time, noise and dropout
from ``key(seed)`` folded with a stream tag, then s, then b (its global index), exactly as the
sampler folds global example indices, so per-example losses are the same on any mesh; the
reported loss is the mean over the gathered global batch (same order on any mesh).

The gradient is reduced in a fixed order (:func:`plan_gradient`): the global batch of B
examples is cut into G equal microbatches g = 0..G-1 of B / G consecutive examples
(``training.grad_shards``), each device computing the gradients of its G / n microbatches
one at a time (same shapes on any mesh), and

    grad = tree_sum_g  grad_theta ( sum_{b in g} loss_b / B )

where ``tree_sum`` adds neighbours pairwise, level by level (an odd last term waits for the
next level). Locally that is a tree over the device's microbatches; across devices the same
tree continues by recursive doubling (``ppermute`` with partner i XOR 2^l, log2 n exchanges
of one gradient; an all-gather when n is not a power of two). When G / n is a power of two
the additions are the same on every mesh of the same G. ``grad_shards = 0`` (default) is
G = n: one microbatch per device, no extra work, and bit-identical parameters on 1 x 4 and
2 x 2 processes x devices; set G (e.g. 8) to compare meshes of 2, 4 and 8 devices bit for bit.

Two XLA effects stay at float32 rounding (relative 1e-6), outside this code: a one-device
mesh compiles through XLA's one-partition pipeline, with other algebraic rewrites than SPMD
(n > 1) programs (e.g. the softmax backward computes g * (1 / s) there but g / s under SPMD);
and XLA:CPU splits loop fusions into max(cores, CPU devices in the process) partitions, so
1 x 4 and 2 x 2 processes x devices agree bit for bit only when the machine has >= 4 cores
(``benchmarks/cpu_layout_check.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from pds.runtime.errors import ConfigError
from pds.runtime.mesh import DATA_AXIS, check_batch
from pds.training.losses import LossFn

TRAIN_STREAM, EVAL_STREAM = 0, 1  # fold_in tags: training and evaluation draws never meet


@flax.struct.dataclass
class TrainState:
    """Everything a resumed run needs besides the config (the rng is a function of
    (seed, step), the data position is ``step`` batches)."""

    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Any
    opt_state: Any
    ema_params: Any
    model_state: Any  # the network's non-'params' collections (usually empty)


def learning_rate_schedule(lr: float, warmup: int) -> optax.Schedule:
    """lr * min(count / warmup, 1), count = updates already applied (constant if warmup <= 0)."""
    if warmup <= 0:
        return optax.constant_schedule(lr)
    return lambda count: lr * jnp.minimum(count / warmup, 1.0)


def make_optimizer(config) -> optax.GradientTransformation:
    """score_sde's Adam: clipping, warmup, optional decoupled weight decay (``config.optim``)."""
    o = config.optim
    if o.optimizer != 'Adam':
        raise ConfigError('optim.optimizer', o.optimizer, "allowed: 'Adam'")
    for field in ('lr', 'beta1', 'eps', 'weight_decay', 'grad_clip'):
        if not isinstance(o[field], int | float) or isinstance(o[field], bool):
            raise ConfigError(f'optim.{field}', o[field], 'a number')
    if not isinstance(o.warmup, int) or isinstance(o.warmup, bool):
        raise ConfigError('optim.warmup', o.warmup, 'an integer (<= 0: no warmup)')
    schedule = learning_rate_schedule(float(o.lr), int(o.warmup))
    kw = dict(b1=float(o.beta1), b2=0.999, eps=float(o.eps))
    if o.weight_decay:
        adam = optax.adamw(schedule, weight_decay=float(o.weight_decay), **kw)
    else:
        adam = optax.adam(schedule, **kw)
    if o.grad_clip < 0:
        return adam
    return optax.chain(optax.clip_by_global_norm(float(o.grad_clip)), adam)


def ema_rate(config) -> float:
    rate = config.model.get('ema_rate', 0.999)
    if not isinstance(rate, int | float) or not 0.0 <= rate < 1.0:
        raise ConfigError('model.ema_rate', rate, 'a number in [0, 1)')
    return float(rate)


def init_state(variables: dict[str, Any], tx: optax.GradientTransformation) -> TrainState:
    """Step 0: the initial network variables, a fresh optimizer state, EMA = parameters."""
    copy = lambda tree: jax.tree_util.tree_map(jnp.array, tree)  # the state is donated
    params = copy(variables['params'])
    model_state = copy({k: v for k, v in variables.items() if k != 'params'})
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      ema_params=copy(params), model_state=model_state)


def example_keys(seed: jax.Array, stream: int, step: jax.Array, global_index: jax.Array
                 ) -> jax.Array:
    """One key per example: key(seed) folded with the stream tag, the step, the global index."""
    base = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), stream), step)
    return jax.vmap(jax.random.fold_in, (None, 0))(base, global_index)


def _global_index(local_b: int) -> jax.Array:
    return jax.lax.axis_index(DATA_AXIS) * local_b + jnp.arange(local_b)


def _global_mean(v: jax.Array) -> jax.Array:
    """Mean over the whole batch, gathered in global order (bit-identical on any mesh)."""
    return jnp.mean(jax.lax.all_gather(v, DATA_AXIS, tiled=True))


@dataclasses.dataclass(frozen=True)
class GradientPlan:
    """G microbatches of ``size`` examples, ``per_device`` of them on each of n devices."""

    shards: int
    per_device: int
    size: int


def plan_gradient(grad_shards: Any, batch_size: int, num_devices: int) -> GradientPlan:
    """The microbatching of ``training.grad_shards`` (0: automatic, see the module doc)."""
    if isinstance(grad_shards, bool) or not isinstance(grad_shards, int) or grad_shards < 0:
        raise ConfigError('training.grad_shards', grad_shards,
                          'an integer >= 0 (0: automatic)')
    if grad_shards == 0:
        grad_shards = num_devices
    if grad_shards % num_devices or batch_size % grad_shards:
        raise ConfigError('training.grad_shards', grad_shards,
                          f'a multiple of the device count ({num_devices}) dividing '
                          f'training.batch_size={batch_size} (0: automatic)')
    return GradientPlan(grad_shards, grad_shards // num_devices, batch_size // grad_shards)


def tree_sum(stacked: Any) -> Any:
    """Sum each leaf over its leading axis by pairwise levels (see the module doc)."""

    def one(a):
        while a.shape[0] > 1:
            even = a.shape[0] // 2 * 2
            pairs = a[0:even:2] + a[1:even:2]
            a = jnp.concatenate([pairs, a[even:]]) if even < a.shape[0] else pairs
        return a[0]

    return jax.tree_util.tree_map(one, stacked)


def device_tree_sum(tree: Any, num_devices: int) -> Any:
    """``tree_sum`` over the devices of the data axis, the same on every device.

    For a power-of-two n, recursive doubling: at level l device i adds the partial sum of
    device i XOR 2^l (float addition is commutative, so both partners hold the same bits).
    """
    if num_devices == 1:
        return tree
    if num_devices & (num_devices - 1):
        return tree_sum(jax.lax.all_gather(tree, DATA_AXIS))
    d = 1
    while d < num_devices:
        perm = [(i, i ^ d) for i in range(num_devices)]
        tree = jax.tree_util.tree_map(
            lambda a, p=perm: a + jax.lax.ppermute(a, DATA_AXIS, p), tree)
        d *= 2
    return tree


def train_step_body(loss_fn: LossFn, tx: optax.GradientTransformation, rate: float,
                    local_b: int, seed: int, plan: GradientPlan, num_devices: int,
                    unroll: bool | int = 1) -> Callable[[TrainState, jax.Array], tuple]:
    """One optimizer step on this device's share ``x`` (local_b, H, W, C) of a global batch."""
    global_b = local_b * num_devices
    k, m = plan.per_device, plan.size

    def step(state: TrainState, x: jax.Array) -> tuple[TrainState, jax.Array]:
        keys = example_keys(seed, TRAIN_STREAM, state.step, _global_index(local_b))

        def objective(params, xm, km):
            losses = loss_fn({'params': params, **state.model_state}, xm, km)
            return jnp.sum(losses) / global_b, losses

        grad_fn = jax.grad(objective, has_aux=True)
        if k == 1:
            grads, losses = grad_fn(state.params, x, keys)
        else:
            def micro(_, inp):
                return None, grad_fn(state.params, *inp)

            batches = (x.reshape(k, m, *x.shape[1:]), keys.reshape(k, m))
            _, (stacked, losses) = jax.lax.scan(micro, None, batches, unroll=unroll)
            grads, losses = tree_sum(stacked), losses.reshape(local_b)
        grads = device_tree_sum(grads, num_devices)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = jax.tree_util.tree_map(lambda e, p: rate * e + (1.0 - rate) * p,
                                     state.ema_params, params)
        new = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            ema_params=ema)
        return new, _global_mean(losses)

    return step


def unroll_steps(mesh: Mesh) -> bool | int:
    """Unroll the scan on CPU meshes, keep it rolled on accelerators.

    XLA:CPU runs convolutions inside a while-loop body about 15x slower than the same
    convolutions unrolled (measured on the small NCSN++: 8.3 s vs 0.5 s per step on 2 cores),
    so on CPU the k steps (and microbatches) are unrolled (compile time grows with k). GPUs
    and TPUs keep a rolled loop (one compiled body).
    """
    return True if mesh.devices.flat[0].platform == 'cpu' else 1


def build_train_step(loss_fn: LossFn, tx: optax.GradientTransformation, rate: float,
                     batch_size: int, mesh: Mesh, seed: int, grad_shards: int = 0
                     ) -> Callable[[TrainState, jax.Array], tuple[TrainState, jax.Array]]:
    """``step(state, xs) -> (state, losses)``: len(xs) steps (a scan) in one compiled call.

    ``xs`` is (k, batch_size, H, W, C) sharded ``P(None, 'data')``; ``losses`` (k,) are the
    global-batch mean losses of the k steps. The state argument is donated. ``grad_shards``:
    the gradient's microbatches (``plan_gradient``).
    """
    local_b = check_batch('training.batch_size', batch_size, mesh)
    n = mesh.devices.size
    unroll = unroll_steps(mesh)
    body = train_step_body(loss_fn, tx, rate, local_b, seed,
                           plan_gradient(grad_shards, batch_size, n), n, unroll)

    def many(state, xs):
        if xs.shape[0] == 1:  # one step: no loop at all
            state, loss = body(state, xs[0])
            return state, loss[None]
        return jax.lax.scan(body, state, xs, unroll=unroll)

    sharded = jax.shard_map(many, mesh=mesh, in_specs=(P(), P(None, DATA_AXIS)),
                            out_specs=(P(), P()), check_vma=False)
    return jax.jit(sharded, donate_argnums=0)


def build_eval_step(loss_fn: LossFn, batch_size: int, mesh: Mesh, seed: int
                    ) -> Callable[[TrainState, jax.Array], jax.Array]:
    """``eval(state, x) -> loss``: the loss of the EMA parameters on a global batch ``x``
    (score_sde's evaluation loss; pass a loss built with ``train=False``)."""
    local_b = check_batch('training.batch_size', batch_size, mesh)

    def body(state, x):
        keys = example_keys(seed, EVAL_STREAM, state.step, _global_index(local_b))
        losses = loss_fn({'params': state.ema_params, **state.model_state}, x, keys)
        return _global_mean(losses)

    sharded = jax.shard_map(body, mesh=mesh, in_specs=(P(), P(DATA_AXIS)), out_specs=P(),
                            check_vma=False)
    return jax.jit(sharded)


def ema_variables(state: TrainState) -> dict[str, Any]:
    """The sampling variables: EMA parameters plus the model's state collections."""
    return {'params': state.ema_params, **state.model_state}


def host_tree(tree: Any) -> Any:
    """A pytree of numpy arrays (fetched from devices)."""
    return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def model_variables(config, rng: jax.Array) -> tuple[nn.Module, dict[str, Any]]:
    """The network of ``config`` and its initial variables."""
    from models.registry import create_model, init_variables

    return create_model(config), init_variables(config, rng)
