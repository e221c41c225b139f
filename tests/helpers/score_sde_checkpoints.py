"""score_sde checkpoints written from random weights in the released formats, for the tests
of ``--mode=convert`` and of the checkpoint store: a reduced CIFAR-10 network (nf 16, two
levels, one block per level, attention at 16x16), its EMA and training weights
(:class:`Source`), and writers of score_sde's Flax (msgpack) and score_sde_pytorch
(torch.save) files."""

from __future__ import annotations

import collections
import importlib
import importlib.util
import os
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np
from flax import serialization

from tests.helpers.paths import ROOT

CONFIG_FILES = {'ve': 've/cifar10_ncsnpp_continuous', 'vp': 'vp/cifar10_ddpmpp_continuous'}
REDUCED = {'model.nf': 16, 'model.ch_mult': (1, 2), 'model.num_res_blocks': 1,
           'model.attn_resolutions': (16,)}
SOURCE_STEP = 4321
HAS_TORCH = importlib.util.find_spec('torch') is not None


def reduced_config(kind: str = 've', **overrides: Any):
    config = importlib.import_module('configs.' + CONFIG_FILES[kind].replace('/', '.')
                                     ).get_config()
    for key, value in {**REDUCED, **overrides}.items():
        node = config
        *path, leaf = key.split('.')
        for name in path:
            node = node[name]
        node[leaf] = value
    return config


def cli_flags(kind: str = 've') -> list[str]:
    flags = [f'--config={os.path.join(ROOT, "configs", CONFIG_FILES[kind])}.py']
    for key, value in REDUCED.items():
        flags.append(f'--config.{key}={value!r}'.replace(' ', ''))
    return flags


# ------------------------------------------------------------------ random source weights
def ordered_shapes(config) -> dict[str, Any]:
    """The network's params as nested dicts of shapes, every dict in creation order."""
    from models.registry import create_model, dummy_inputs

    model = create_model(config)
    seen: list[Any] = []

    def walk(tree):
        return ({k: walk(v) for k, v in tree.items()} if isinstance(tree, Mapping)
                else tuple(tree.shape))

    def init(key):
        variables = model.init({'params': key, 'dropout': key}, *dummy_inputs(config),
                               train=False)
        seen.append(walk(variables['params']))
        return variables

    jax.eval_shape(init, jax.random.PRNGKey(0))
    return seen[0]


def random_params(shapes: Mapping[str, Any], rng: np.random.Generator,
                  path: tuple[str, ...] = ()) -> dict[str, Any]:
    """Random float32 weights of moderate scale, in the order of ``shapes``."""
    out = {}
    for name, sub in shapes.items():
        if isinstance(sub, Mapping):
            out[name] = random_params(sub, rng, (*path, name))
            continue
        noise = rng.standard_normal(sub)
        if name == 'scale':
            value = 1.0 + 0.1 * noise
        elif name in ('bias', 'b'):
            value = 0.1 * noise
        elif path and path[-1].startswith('GaussianFourierProjection'):
            value = 16.0 * noise
        else:
            value = noise / np.sqrt(np.prod(sub[:-1]))
        out[name] = value.astype(np.float32)
    return out


class Source:
    """A reduced network with random EMA weights, other training weights, and reference
    outputs of the EMA network on fixed inputs."""

    def __init__(self, kind: str):
        from models.registry import create_model

        self.kind = kind
        self.config = reduced_config(kind)
        shapes = ordered_shapes(self.config)
        rng = np.random.default_rng(7)
        self.ema = random_params(shapes, rng)
        self.train = random_params(shapes, rng)
        model = create_model(self.config)
        self.apply = jax.jit(lambda v, x, t: model.apply(v, x, t, train=False))
        self.x = rng.uniform(size=(2, 32, 32, 3)).astype(np.float32)
        self.t = np.array([0.5, 3.0] if kind == 've' else [10.0, 700.0], np.float32)
        self.reference = np.asarray(self.apply({'params': self.ema}, self.x, self.t))

    def outputs(self, variables: Mapping[str, Any]) -> np.ndarray:
        return np.asarray(self.apply(variables, self.x, self.t))


def get_source(sources: dict[str, Source], kind: str) -> Source:
    if kind not in sources:
        sources[kind] = Source(kind)
    return sources[kind]


# ------------------------------------------------------------------ file writers
def write_flax_checkpoint(path: str, src: Source, step: int = SOURCE_STEP) -> str:
    """score_sde's flax.training.checkpoints file: msgpack of the old training state."""
    adam = jax.tree_util.tree_map(
        lambda a: {'grad_ema': np.zeros_like(a), 'grad_sq_ema': np.zeros_like(a)}, src.train)
    state = {
        'step': np.asarray(step, np.int64),
        'optimizer': {'target': src.train, 'state': {'step': np.asarray(step, np.int64),
                                                     'param_states': adam}},
        'lr': np.asarray(2e-4, np.float32),
        'model_state': {},
        'ema_rate': np.asarray(0.9999, np.float32),
        'params_ema': src.ema,
        'rng': np.array([0, 42], np.uint32),
    }
    with open(path, 'wb') as f:
        f.write(serialization.msgpack_serialize(state))
    return path


def torch_layout(name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """Flax leaf -> torch parameter: HWIO -> OIHW, Dense (in, out) -> Linear (out, in),
    GroupNorm scale -> weight; bias, NIN W/b and the Fourier W unchanged."""
    if value.ndim == 4:
        return 'weight', value.transpose(3, 2, 0, 1)
    if name == 'kernel':
        return 'weight', value.T
    if name == 'scale':
        return 'weight', value
    return name, value


def torch_entries(params: Mapping[str, Any], gaps: tuple[int, ...] = ()
                  ) -> Iterator[tuple[str, np.ndarray, bool]]:
    """(key, torch-layout array, requires_grad) in parameters() order.

    ``all_modules.<i>``: i counts top-level modules in construction order; ``gaps`` are
    indices of modules without parameters (score_sde_pytorch's pyramid up/down-samplers).
    """
    index = 0
    for top, module in params.items():
        while index in gaps:
            index += 1
        trainable = not top.startswith('GaussianFourierProjection')
        for sub, value in _leaves(module):
            name, array = torch_layout(sub[-1], value)
            yield '.'.join(['all_modules', str(index), *sub[:-1], name]), array, trainable
        index += 1


def _leaves(tree: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if not isinstance(tree, Mapping):
        yield path, tree
        return
    order = {'kernel': 0, 'scale': 0, 'weight': 0, 'W': 0, 'bias': 1, 'b': 1}
    for name in sorted(tree, key=lambda n: order.get(n, 0)):  # stable: submodules keep order
        yield from _leaves(tree[name], (*path, name))


def write_torch_checkpoint(path: str, src: Source, gaps: tuple[int, ...] = (),
                           drop_shadow: int = 0, legacy: bool = False) -> str:
    """score_sde_pytorch's checkpoint_<n>.pth (see module docstring)."""
    import torch

    ema = list(torch_entries(src.ema, gaps))
    train = list(torch_entries(src.train, gaps))
    model = collections.OrderedDict([('module.sigmas', torch.linspace(50.0, 0.01, 10))])
    for (key, ema_value, trainable), (_, train_value, _) in zip(ema, train):
        model['module.' + key] = torch.from_numpy(np.ascontiguousarray(
            train_value if trainable else ema_value))
    shadow = [torch.from_numpy(np.ascontiguousarray(v)) for _, v, t in ema if t]
    shadow = shadow[:len(shadow) - drop_shadow]
    ckpt = {
        'optimizer': {'state': {}, 'param_groups': [{'lr': 2e-4, 'params': list(range(len(
            shadow)))}]},
        'model': model,
        'ema': {'decay': 0.9999, 'num_updates': 100, 'shadow_params': shadow},
        'step': SOURCE_STEP,
    }
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    return path


def assert_converted(src: Source, variables: Mapping[str, Any]) -> None:
    assert set(variables) == {'params'}
    flat = jax.tree_util.tree_leaves_with_path(variables['params'])
    expected = dict(jax.tree_util.tree_leaves_with_path(src.ema))
    assert len(flat) == len(expected)
    for key, value in flat:
        np.testing.assert_array_equal(np.asarray(value), expected[key],
                                      err_msg=jax.tree_util.keystr(key))
    np.testing.assert_allclose(src.outputs(variables), src.reference, rtol=0, atol=1e-5)
    other = src.outputs({'params': src.train})
    assert np.max(np.abs(other - src.reference)) > 1e-2  # the training weights differ
