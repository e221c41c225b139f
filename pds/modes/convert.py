"""``--mode=convert --source=FILE``: import a released score_sde checkpoint into the store.

Accepted files (recognised by their first bytes, not by their name):

- score_sde (JAX/Flax) ``checkpoints/checkpoint_<n>``: a flax.training.checkpoints msgpack map
  of the old training state {step, optimizer: {target, state}, lr, model_state, ema_rate,
  params_ema, rng}. Sampling uses ``params_ema`` (the inner params dict, flax names and
  layouts) plus the collections of ``model_state`` (usually none). Read with
  ``flax.serialization.msgpack_restore``; no flax.optim needed.
- score_sde_pytorch ``checkpoint_<n>.pth``: torch.save({'optimizer', 'model', 'ema', 'step'})
  as a zip archive (or the legacy pickle stream). ``'model'`` is a DataParallel state_dict
  with keys 'module.all_modules.<i>.<sub>.<param>' (i counts the top-level modules in
  construction order, including modules without parameters) and the buffer 'module.sigmas'
  (ignored). ``ema['shadow_params']`` lists the trainable parameters in ``parameters()``
  order, which is the state_dict order less the frozen Fourier projection ``W``; ``W`` comes
  from ``'model'``. Loaded with ``weights_only=True``: a pickle that would run code is refused.

Torch to flax: the top-level modules that own parameters pair, in order, with the flax
network's top-level modules in creation order (the flax auto-names: Conv_0, Dense_0,
ResnetBlockBigGANpp_0, ...); torch sub-module names equal the flax names. Leaves: conv
'weight' (O, I, H, W) -> 'kernel' (H, W, I, O) (or upfirdn Conv2d 'weight', also HWIO),
Linear 'weight' (out, in) -> Dense 'kernel' (in, out), GroupNorm 'weight' -> 'scale', 'bias'
and NIN 'W' (in, out) / 'b' unchanged. Every parameter is checked shape by shape.

The result goes to ``<workdir>/checkpoints`` (see :mod:`pds.storage.sampling_checkpoints`)
with the source's step; a store that already holds a checkpoint is only replaced with ``overwrite``.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from pds.runtime.errors import ConfigError
from pds.storage import outputs, sampling_checkpoints

FIELD = '--source'
ZIP_MAGIC = b'PK\x03\x04'
EXPECTED = ('a score_sde Flax checkpoint (flax msgpack training state with params_ema) '
                 'or a score_sde_pytorch .pth (torch.save of optimizer/model/ema/step)')
TORCH_HINT = 'reading a PyTorch .pth checkpoint needs torch: pip install torch==2.13.0'


# ----------------------------------------------------------------------------- format
def detect_format(path: str) -> str:
    """'flax' (msgpack map), 'torch' (zip archive or protocol-2+ pickle), else ConfigError."""
    if not os.path.isfile(path):
        what = 'a directory' if os.path.isdir(path) else 'missing'
        raise ConfigError(FIELD, path, f'a checkpoint file ({what}); expected {EXPECTED}')
    with open(path, 'rb') as f:
        head = f.read(4)
    if head.startswith(ZIP_MAGIC) or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return 'torch'
    if head and (0x81 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF)):
        return 'flax'
    what = 'an empty file' if not head else f'a file starting with bytes {head.hex()}'
    raise ConfigError(FIELD, path, f'{EXPECTED}; this is {what}, neither msgpack nor '
                      'a torch zip/pickle')


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


# ----------------------------------------------------------------------------- flax
def read_flax_checkpoint(path: str) -> tuple[dict[str, Any], int]:
    """(variables {'params': params_ema, **model_state}, step) from a score_sde msgpack file."""
    from flax import serialization

    with open(path, 'rb') as f:
        data = f.read()
    try:
        state = serialization.msgpack_restore(data)
    except Exception as err:  # msgpack raises several types on truncated or corrupt data
        raise ConfigError(FIELD, path, 'a complete score_sde Flax checkpoint (msgpack); it is '
                          f'truncated or corrupt ({_first_line(err)})') from None
    if not isinstance(state, Mapping) or not isinstance(state.get('params_ema'), Mapping):
        keys = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise ConfigError(FIELD, path, 'a score_sde Flax training state with params_ema; the '
                          f'msgpack map holds {keys}')
    params = state['params_ema']
    if list(params) == ['params']:  # a variables dict rather than score_sde's inner params
        params = params['params']
    variables = {'params': params}
    model_state = state.get('model_state') or {}
    if isinstance(model_state, Mapping):
        variables.update({k: v for k, v in model_state.items()
                          if not isinstance(v, Mapping) or v})
    problem = _leaf_problem(variables, ())
    if problem:
        raise ConfigError(FIELD, path, f'a score_sde Flax checkpoint whose parameters are '
                          f'numeric arrays under str names; {problem}')
    return variables, _step_of(state.get('step'))


def _leaf_problem(tree: Any, path: tuple[str, ...]) -> str | None:
    """The first key that is not a str or leaf that is not a numeric array, as a phrase."""
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            if not isinstance(key, str):
                return f"{'/'.join(path) or 'the top level'} has the key {key!r}"
            problem = _leaf_problem(value, (*path, key))
            if problem:
                return problem
        return None
    if isinstance(tree, np.ndarray | np.generic) and tree.dtype.kind in 'biuf':
        return None
    what = (f'an array of dtype {tree.dtype}' if isinstance(tree, np.ndarray | np.generic)
            else f'a {type(tree).__name__}')
    return f"{'/'.join(path)} is {what}"


def _step_of(step: Any) -> int:
    try:
        return max(0, int(np.asarray(step).reshape(-1)[0])) if step is not None else 0
    except (TypeError, ValueError, IndexError):
        return 0


# ----------------------------------------------------------------------------- torch
def _import_torch(path: str):
    try:
        import torch
    except ImportError:
        raise ConfigError(FIELD, path, TORCH_HINT) from None
    return torch


def check_torch_zip(path: str) -> None:
    """A zip file must be whole and hold a torch pickle ('<archive>/data.pkl')."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise ConfigError(FIELD, path, 'a complete torch .pth zip archive; it is truncated or '
                          f'corrupt ({_first_line(err)})') from None
    if not any(n == 'data.pkl' or n.endswith('/data.pkl') for n in names):
        raise ConfigError(FIELD, path, f'{EXPECTED}; this is a zip archive without '
                          f'data.pkl (e.g. an .npz), holding {names[:3]}')


def load_torch_file(path: str) -> Any:
    """``torch.load(weights_only=True)`` with refusals and damage reported as ConfigError."""
    with open(path, 'rb') as f:
        if f.read(4) == ZIP_MAGIC:
            check_torch_zip(path)
    torch = _import_torch(path)
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        if 'weights only load failed' in str(err).lower():
            raise ConfigError(FIELD, path, 'a .pth of tensors and plain containers only; '
                              'torch refused to unpickle it since it would call '
                              f'code ({_unsafe_global(err)}). Nothing was run') from None
        raise ConfigError(FIELD, path, 'a complete torch checkpoint; it is truncated or '
                          f'corrupt ({_first_line(err)})') from None
    except Exception as err:  # zip/pickle readers raise RuntimeError, EOFError, ...
        raise ConfigError(FIELD, path, 'a complete torch checkpoint; it is truncated or '
                          f'corrupt ({type(err).__name__}: {_first_line(err)})') from None


def _unsafe_global(err: BaseException) -> str:
    for line in str(err).splitlines():
        if 'GLOBAL' in line or 'Unsupported' in line:
            return line.strip()[:160]
    return 'unsupported global'


def _to_numpy(tensor: Any, name: str, path: str) -> np.ndarray:
    """A numeric torch tensor as a numpy array (floats as float32); ConfigError for any
    other entry."""
    torch = _import_torch(path)
    if not isinstance(tensor, torch.Tensor):
        raise ConfigError(FIELD, path, 'a score_sde_pytorch checkpoint whose state dicts hold '
                          f'tensors; {name} is a {type(tensor).__name__}')
    try:
        if tensor.is_complex():
            raise TypeError(f'complex dtype {tensor.dtype}')
        if tensor.is_floating_point():
            tensor = tensor.float()
        return tensor.detach().cpu().numpy()
    except Exception as err:  # sparse, quantized, meta or complex tensors
        raise ConfigError(FIELD, path, 'a score_sde_pytorch checkpoint of dense real tensors; '
                          f'{name} cannot be read ({_first_line(err)})') from None


_MODEL_KEY = re.compile(r'all_modules\.\d+(\.[^.]+)+')


def read_torch_checkpoint(path: str) -> tuple[dict[str, np.ndarray], int]:
    """(state_dict of the modules, EMA values in place, 'module.' stripped; step).

    Keys keep the file's order ('all_modules.<i>.<sub>.<param>'); buffers outside
    ``all_modules`` (the 'sigmas' ladder) are dropped. Arrays keep the torch layouts.
    """
    ckpt = load_torch_file(path)
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get('model'), Mapping):
        keys = sorted(map(str, ckpt)) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ConfigError(FIELD, path, "a score_sde_pytorch checkpoint with 'model' and 'ema' "
                          f'state dicts; the file holds {keys}')
    ema = ckpt.get('ema')
    shadow = ema.get('shadow_params') if isinstance(ema, Mapping) else None
    if not isinstance(shadow, list | tuple):
        raise ConfigError(FIELD, path, "a score_sde_pytorch checkpoint with an 'ema' state "
                          "(shadow_params); the file has none")
    state = {}
    for raw_key, value in ckpt['model'].items():
        key = _strip_module(str(raw_key))
        if not key.startswith('all_modules.'):
            continue  # buffers such as the 'sigmas' ladder
        if not _MODEL_KEY.fullmatch(key):
            raise ConfigError(FIELD, path, "a score_sde_pytorch checkpoint whose 'model' keys "
                              f"read 'all_modules.<i>.<sub>.<param>'; it has {str(raw_key)!r}")
        state[key] = _to_numpy(value, f'model[{key!r}]', path)
    _apply_shadow(state, [_to_numpy(s, f'ema shadow_params[{i}]', path)
                          for i, s in enumerate(shadow)], path)
    return state, _step_of(ckpt.get('step'))


def _strip_module(key: str) -> str:
    return key[len('module.'):] if key.startswith('module.') else key


def _frozen_keys(state: Mapping[str, np.ndarray]) -> set[str]:
    """The Fourier projection: a module whose only parameter is 'W' (NIN has 'W' and 'b')."""
    owners: dict[str, list[str]] = {}
    for key in state:
        owner, _, name = key.rpartition('.')
        owners.setdefault(owner, []).append(name)
    return {f'{o}.W' for o, names in owners.items() if names == ['W']}


def _apply_shadow(state: dict[str, np.ndarray], shadow: list[np.ndarray], path: str) -> None:
    """Replace the trainable entries of ``state`` by the EMA values, in order; checked.

    ``shadow[j]`` belongs to the j-th trainable parameter in ``parameters()`` order, which is
    the state_dict order less buffers and frozen parameters (only the Fourier ``W``).
    """
    frozen = _frozen_keys(state)
    trainable = [k for k in state if k not in frozen]
    if len(trainable) != len(shadow):
        raise ConfigError(FIELD, path, f"an 'ema' with one shadow parameter per trainable "
                          f'model parameter; it has {len(shadow)} for {len(trainable)}')
    for key, value in zip(trainable, shadow):
        if value.shape != state[key].shape:
            raise ConfigError(FIELD, path, f'an ema whose shadow parameters follow the model '
                              f'order; the one for {key} has shape {value.shape}, the model '
                              f'{state[key].shape}')
        state[key] = value


# ----------------------------------------------------------------------------- mapping
def ordered_abstract_variables(config) -> dict[str, Any]:
    """Like ``models.registry.abstract_variables`` but with every dict in creation order."""
    from models.registry import create_model, dummy_inputs

    model = create_model(config)
    captured: list[dict[str, Any]] = []

    def shapes(tree: Any) -> Any:
        if isinstance(tree, Mapping):
            return {k: shapes(v) for k, v in tree.items()}
        return jax.ShapeDtypeStruct(tree.shape, tree.dtype)

    def init(key: jax.Array) -> Any:
        variables = model.init({'params': key, 'dropout': key}, *dummy_inputs(config),
                               train=False)
        captured.append(shapes(variables))
        return variables

    jax.eval_shape(init, jax.random.PRNGKey(0))
    return captured[0]


def _top_index(key: str) -> int:
    return int(key.split('.')[1])


def _leaf_name(torch_name: str, module: Any) -> str:
    """The flax leaf of torch parameter ``torch_name`` inside flax ``module`` (a dict)."""
    if torch_name != 'weight':
        return torch_name
    for candidate in ('kernel', 'scale', 'weight'):
        if isinstance(module, Mapping) and candidate in module:
            return candidate
    return 'kernel'  # the module is absent from the config: name it like a conv/dense


def to_flax_layout(value: np.ndarray, leaf: str) -> np.ndarray:
    """OIHW -> HWIO for conv weights, (out, in) -> (in, out) for Dense kernels."""
    if leaf in ('kernel', 'weight') and value.ndim == 4:
        return np.transpose(value, (2, 3, 1, 0))
    if leaf == 'kernel' and value.ndim == 2:
        return value.T
    return value


def _lookup(tree: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        if not isinstance(tree, Mapping) or name not in tree:
            return None
        tree = tree[name]
    return tree


def flax_path_of(key: str, top_names: Mapping[int, str], params: Mapping[str, Any]
                 ) -> tuple[str, ...]:
    """('ResnetBlockBigGANpp_3', 'Conv_0', 'kernel') for 'all_modules.12.Conv_0.weight'."""
    _, index, *sub, name = key.split('.')
    top = top_names.get(int(index), f'<module {index} beyond this config>')
    module_path = (top, *sub)
    return (*module_path, _leaf_name(name, _lookup(params, module_path)))


def torch_to_flax(state: Mapping[str, np.ndarray], expected: Mapping[str, Any], path: str
                  ) -> dict[str, Any]:
    """Flax ``{'params': ...}`` from a torch state_dict (see module docstring); checked."""
    params_expected = expected['params']
    indices = sorted({_top_index(k) for k in state})
    top_names = dict(zip(indices, params_expected))
    params: dict[str, Any] = {}
    for key, value in state.items():
        fpath = flax_path_of(key, top_names, params_expected)
        want = _lookup(params_expected, fpath)
        got = to_flax_layout(value, fpath[-1])
        name = '/'.join(fpath)
        if want is None or isinstance(want, Mapping):
            raise ConfigError(FIELD, path, f'the file has parameter {name} ({key}), which '
                              'this config lacks')
        if tuple(got.shape) != tuple(want.shape):
            raise ConfigError(FIELD, path, f'parameter {name} ({key}) has shape '
                              f'{sampling_checkpoints.format_shape(got.shape)} in the file but '
                              f'{sampling_checkpoints.format_shape(want.shape)} for this config')
        _insert(params, fpath, np.ascontiguousarray(got, dtype=want.dtype))
    variables = {'params': params}
    # reports what is missing
    sampling_checkpoints.check_variables(variables, expected, FIELD, path)
    return variables


def _insert(tree: dict[str, Any], path: tuple[str, ...], value: np.ndarray) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value


def _cast_like(found: Any, expected: Any) -> Any:
    if isinstance(expected, Mapping):
        return {k: _cast_like(found[k], v) for k, v in expected.items()}
    return np.asarray(found, dtype=expected.dtype)


# ----------------------------------------------------------------------------- run
def read_source(path: str, config) -> tuple[dict[str, Any], int, str]:
    """(variables checked against ``config``, step, format name) of a checkpoint file."""
    fmt = detect_format(path)
    if fmt == 'flax':  # the file first: a damaged one fails before the network is built
        variables, step = read_flax_checkpoint(path)
        expected = ordered_abstract_variables(config)
        sampling_checkpoints.check_variables(variables, expected, FIELD, path)
        return _cast_like(variables, expected), step, 'score_sde flax msgpack'
    state, step = read_torch_checkpoint(path)
    expected = ordered_abstract_variables(config)
    return torch_to_flax(state, expected, path), step, 'score_sde_pytorch .pth (ema)'


def _claim_store(ckpt_dir: str, overwrite: bool) -> None:
    steps = sampling_checkpoints.stored_steps(ckpt_dir)
    if steps and not overwrite:
        raise ConfigError('--workdir', os.path.dirname(ckpt_dir),
                          f'a directory without a checkpoint ({ckpt_dir} holds step '
                          f'{steps[-1]}; pass --overwrite to replace it)')


def run(config, workdir: str, overwrite: bool = False, source: str | None = None
        ) -> dict[str, Any]:
    """Convert ``source`` into ``<workdir>/checkpoints``; returns and prints a summary."""
    from models.registry import param_count

    if not source:
        raise ConfigError(FIELD, source, f'a checkpoint file for --mode=convert: {EXPECTED}')
    source = os.path.abspath(os.path.expanduser(source))
    detect_format(source)  # fail fast on unknown files, before touching the workdir
    outputs.prepare_workdir(workdir)
    ckpt_dir = os.path.join(os.path.abspath(workdir), 'checkpoints')
    _claim_store(ckpt_dir, overwrite)
    variables, step, fmt = read_source(source, config)
    meta = {'source': source, 'format': fmt, 'model': str(config.model.name)}
    step_dir = sampling_checkpoints.save_variables(ckpt_dir, variables, step, overwrite=overwrite,
                                          metadata=meta)
    removed = sampling_checkpoints.delete_steps(ckpt_dir, keep=step) if overwrite else []
    count = param_count(variables)
    print(f'converted {source} ({fmt}): {count:,} parameters, step {step} -> {step_dir}'
          + (f' (replaced steps {removed})' if removed else ''))
    return {'params': count, 'step': step, 'format': fmt, 'path': step_dir}
