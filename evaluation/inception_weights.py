"""Convert pytorch-fid's FID Inception weights to our ``.npz`` layout, and load them checked.

Source: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (a state_dict; its SHA-256
starts with ``6726825d``), downloadable from pytorch-fid's GitHub release ``fid_weights``.
Fetch and convert once (needs torch; ``pip install -r requirements-test.txt`` provides it)::

    python -m evaluation.inception_weights --fetch --out inception_fid.npz

downloads ``SOURCE_URL`` (``--url`` for a mirror) into ``--cache-dir`` (default
``$XDG_CACHE_HOME/pds`` or ``~/.cache/pds``) once, verified (``evaluation.fetch``); a later call
reuses the cached file without network. Without network, place the file in the cache directory
by hand, or convert a copy directly::

    python -m evaluation.inception_weights \
        --source pt_inception-2015-12-05-6726825d.pth --out inception_fid.npz

Layout of the ``.npz``: one float32 array per parameter of ``FIDInceptionV3``, keyed by its
'/'-joined path. Renaming from the state_dict (``X`` = a BasicConv2d path such as
``Mixed_6b.branch7x7_2``, '.' -> '/')::

    X.conv.weight (O, I, kh, kw) -> X/kernel (kh, kw, I, O)
    X.bn.weight / X.bn.bias      -> X/scale / X/bias
    X.bn.running_mean / _var     -> X/mean / X/var        (num_batches_tracked is dropped)
    fc.weight (1008, 2048)       -> fc/kernel (2048, 1008);  fc.bias -> fc/bias

plus two metadata entries: ``__sha256__`` (``params_digest`` of the arrays, verified by
``load_inception_params``) and ``__source_sha256__`` (digest of the .pth file).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from evaluation import fetch
from evaluation.fetch import file_sha256
from evaluation.inception import param_shapes, unflatten

SOURCE_NAME = 'pt_inception-2015-12-05-6726825d.pth'
SOURCE_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
              + SOURCE_NAME)
SOURCE_SHA256_PREFIX = '6726825d'  # torch.hub's convention: the name's hash starts the sha256
DEFAULT_OUT = 'inception_fid.npz'
DIGEST_KEY = '__sha256__'
SOURCE_DIGEST_KEY = '__source_sha256__'
_BN_RENAME = {'weight': 'scale', 'bias': 'bias', 'running_mean': 'mean', 'running_var': 'var'}


def convert_command(out: str | os.PathLike = DEFAULT_OUT) -> str:
    """The exact shell command that produces ``out`` from a local copy of the source."""
    return f'python -m evaluation.inception_weights --source {SOURCE_NAME} --out {out}'


def fetch_command(out: str | os.PathLike = DEFAULT_OUT) -> str:
    """The exact shell command that downloads (once, cached) and converts into ``out``."""
    return f'python -m evaluation.inception_weights --fetch --out {out}'


def fetch_source(cache_dir: str | os.PathLike | None = None, url: str = SOURCE_URL,
                 sha256: str | None = None, **kwargs) -> fetch.Fetched:
    """pytorch-fid's release file in ``cache_dir`` (default ``fetch.default_cache_dir()``)
    as ``SOURCE_NAME``, downloaded once and verified against ``sha256`` (default
    ``SOURCE_SHA256_PREFIX``) by ``evaluation.fetch.fetch``."""
    cache_dir = fetch.default_cache_dir() if cache_dir is None else Path(cache_dir)
    sha256 = SOURCE_SHA256_PREFIX if sha256 is None else sha256
    return fetch.fetch(url, cache_dir / SOURCE_NAME, sha256, **kwargs)


def params_digest(flat: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over (name, dtype, shape, little-endian bytes) of every array, names sorted."""
    h = hashlib.sha256()
    for key in sorted(flat):
        arr = np.ascontiguousarray(flat[key])
        h.update(key.encode())
        h.update(arr.dtype.newbyteorder('<').str.encode())
        h.update(repr(tuple(arr.shape)).encode())
        h.update(arr.astype(arr.dtype.newbyteorder('<'), copy=False).tobytes())
    return h.hexdigest()


def state_dict_to_flat(state_dict: Mapping[str, object]) -> dict[str, np.ndarray]:
    """pytorch-fid state_dict (tensors or arrays) -> {'a/b/kernel': float32 array}.

    Raises ValueError (one line) on keys it cannot place (malformed or unknown) and on
    entries that are not numeric tensors or arrays of the layout's ndim.
    """
    if not isinstance(state_dict, Mapping):
        raise ValueError(f'not a state_dict (got {type(state_dict).__name__})')
    flat: dict[str, np.ndarray] = {}
    unknown = []
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise ValueError(f'state_dict key {key!r} is not a str')
        arr = _numeric_array(key, value)
        parts = key.split('.')
        if parts[-1] == 'num_batches_tracked':
            continue
        if parts[:-1] == ['fc'] and parts[-1] in ('weight', 'bias'):
            name = 'fc/' + {'weight': 'kernel', 'bias': 'bias'}[parts[-1]]
            arr = arr.T if parts[-1] == 'weight' else arr
        elif len(parts) >= 3 and parts[-2] == 'conv' and parts[-1] == 'weight':
            if arr.ndim != 4:
                raise ValueError(f'state_dict entry {key} has shape {arr.shape}, not a 4-d '
                                 'conv weight (O, I, kh, kw)')
            name = '/'.join(parts[:-2]) + '/kernel'
            arr = arr.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif len(parts) >= 3 and parts[-2] == 'bn' and parts[-1] in _BN_RENAME:
            name = '/'.join(parts[:-2]) + '/' + _BN_RENAME[parts[-1]]
        else:
            unknown.append(key)
            continue
        flat[name] = np.ascontiguousarray(arr, dtype=np.float32)
    if unknown:
        raise ValueError(f'unexpected keys in the Inception state_dict: {unknown[:5]}'
                         f'{" ..." if len(unknown) > 5 else ""}')
    return flat


def _numeric_array(key: str, value: object) -> np.ndarray:
    """A state_dict entry as a numeric numpy array; ValueError for anything else."""
    try:
        arr = value.detach().cpu().numpy() if hasattr(value, 'detach') else value
    except Exception as err:  # sparse, quantized or meta tensors, ...
        raise ValueError(f'state_dict entry {key} cannot be read as an array '
                         f'({type(err).__name__})') from None
    if not isinstance(arr, np.ndarray | np.generic) or arr.dtype.kind not in 'biuf':
        what = (f'an array of dtype {arr.dtype}' if isinstance(arr, np.ndarray | np.generic)
                else f'a {type(value).__name__}')
        raise ValueError(f'state_dict entry {key} is {what}, not a numeric tensor')
    return np.asarray(arr)


def check_layout(flat: Mapping[str, np.ndarray], origin: str) -> None:
    """Raise ValueError unless ``flat`` has exactly the keys and shapes of FIDInceptionV3."""
    want = param_shapes()
    missing = sorted(set(want) - set(flat))
    extra = sorted(set(flat) - set(want))
    wrong = sorted(k for k in set(want) & set(flat) if tuple(flat[k].shape) != want[k])
    if missing or extra or wrong:
        detail = '; '.join(
            f'{label}: {items[:4]}{" ..." if len(items) > 4 else ""} ({len(items)})'
            for label, items in (('missing', missing), ('unexpected', extra),
                                 ('wrong shape', wrong)) if items)
        raise ValueError(f'{origin} does not match the FID Inception layout: {detail}')


def load_torch_state_dict(source: str | os.PathLike) -> dict[str, object]:
    """Read a .pth state_dict with ``torch.load(weights_only=True)`` (torch imported lazily)."""
    try:
        import torch
    except ImportError as e:
        raise ImportError('converting the .pth weights needs torch, an optional extra: '
                          'pip install -r requirements-test.txt') from e
    try:
        sd = torch.load(os.fspath(source), map_location='cpu', weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        text = ' '.join(str(err).split())[:200]
        raise ValueError(f'{source}: not a readable torch state_dict .pth '
                         f'({type(err).__name__}: {text})') from None
    if not isinstance(sd, Mapping):
        raise ValueError(f'{source} does not hold a state_dict (got {type(sd).__name__})')
    return dict(sd)


def convert(source: str | os.PathLike, out: str | os.PathLike,
            verify_source: bool = True) -> str:
    """Convert ``source`` (.pth) to ``out`` (.npz). Returns the params digest.

    If the source filename carries a torch-hub style hash (``name-<hex>.pth``) and
    ``verify_source``, the file's SHA-256 must start with it.
    """
    source_digest = file_sha256(source)
    tag = re.search(r'-([0-9a-f]{6,64})\.pth$', Path(source).name)
    if verify_source and tag and not source_digest.startswith(tag.group(1)):
        raise ValueError(f'{source}: SHA-256 {source_digest[:16]}... does not start with the '
                         f'hash {tag.group(1)} in its name (corrupt download?)')
    flat = state_dict_to_flat(load_torch_state_dict(source))
    check_layout(flat, str(source))
    digest = params_digest(flat)
    np.savez(out, **flat, **{DIGEST_KEY: np.array(digest),
                             SOURCE_DIGEST_KEY: np.array(source_digest)})
    return digest


def save_params(flat: Mapping[str, np.ndarray], out: str | os.PathLike) -> str:
    """Write already-converted flat params (e.g. random ones in tests) with their digest."""
    flat = {k: np.asarray(v, np.float32) for k, v in flat.items()}
    check_layout(flat, 'params')
    digest = params_digest(flat)
    np.savez(out, **flat, **{DIGEST_KEY: np.array(digest), SOURCE_DIGEST_KEY: np.array('')})
    return digest


def not_found_message(path: str | os.PathLike) -> str:
    """What to do when the converted weights are absent (one line)."""
    return (f'FID Inception weights not found at {path}: run `{fetch_command(path)}` '
            f"(downloads pytorch-fid's release file {SOURCE_NAME} once, needs torch), or "
            f'without network get that file and run `{convert_command(path)}`')


def load_inception_params(path: str | os.PathLike, expected_sha256: str | None = None) -> dict:
    """Load the converted ``.npz`` into the nested params tree of ``FIDInceptionV3``.

    Raises FileNotFoundError (naming the file and the conversion command) if it is absent,
    ValueError (one line) if it is unreadable (empty, truncated, corrupt, object arrays) or
    the stored digest, ``expected_sha256`` or the key/shape layout disagree.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(not_found_message(path))
    try:
        with np.load(path, allow_pickle=False) as data:
            flat = {k: data[k] for k in data.files}
    except Exception as err:  # zipfile, zlib, numpy and the OS raise many types
        text = ' '.join(f'{type(err).__name__}: {err}'.split())[:200]
        raise ValueError(f'{path}: not a readable weights .npz ({text}); re-create it with '
                         f'`{convert_command(path)}`') from None
    return params_from_flat(flat, path, expected_sha256)


def params_from_flat(flat: Mapping[str, np.ndarray], origin: str | os.PathLike,
                     expected_sha256: str | None = None) -> dict:
    """The params tree of a weights file's arrays (including ``DIGEST_KEY``), checked: the
    stored digest matches the arrays (and ``expected_sha256``), every parameter is a finite
    float array, and the keys and shapes are ``FIDInceptionV3``'s. ValueError naming
    ``origin`` otherwise."""
    flat = dict(flat)
    stored = flat.pop(DIGEST_KEY, None)
    flat.pop(SOURCE_DIGEST_KEY, None)
    if stored is None or np.ndim(stored) or np.asarray(stored).dtype.kind != 'U':
        raise ValueError(f'{origin} has no {DIGEST_KEY} entry; re-create it with '
                         f'`{convert_command(origin)}`')
    stored = str(stored)
    for key, arr in flat.items():
        if not isinstance(arr, np.ndarray) or arr.dtype.kind != 'f':
            raise ValueError(f'{origin}: parameter {key} is not a float array '
                             f'({getattr(arr, "dtype", type(arr).__name__)})')
    actual = params_digest(flat)
    if actual != stored:
        raise ValueError(f'{origin}: checksum mismatch (stored {stored[:16]}..., contents '
                         f'{actual[:16]}...): the file is corrupt, re-run '
                         f'`{convert_command(origin)}`')
    if expected_sha256 is not None and actual != expected_sha256:
        raise ValueError(f'{origin}: SHA-256 {actual[:16]}... differs from the expected '
                         f'{expected_sha256[:16]}...')
    check_layout(flat, str(origin))
    bad = next((k for k, a in flat.items() if not np.all(np.isfinite(a))), None)
    if bad is not None:
        raise ValueError(f'{origin}: parameter {bad} holds NaN or infinite values')
    return unflatten(flat)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--source', default=None,
                        help=f'pytorch-fid .pth state_dict (default {SOURCE_NAME})')
    source.add_argument('--fetch', action='store_true',
                        help='download the source once into --cache-dir (verified) and use it')
    parser.add_argument('--url', default=SOURCE_URL, help='with --fetch: where to download from')
    parser.add_argument('--cache-dir', default=None,
                        help=f'with --fetch: the cache (default {fetch.default_cache_dir()})')
    parser.add_argument('--out', default=DEFAULT_OUT, help='output .npz')
    parser.add_argument('--no-verify-source', action='store_true',
                        help='skip the hash-in-filename check of the source')
    args = parser.parse_args(argv)
    if not args.fetch and (args.url != SOURCE_URL or args.cache_dir is not None):
        parser.error('--url and --cache-dir go with --fetch')
    if args.fetch:
        try:
            got = fetch_source(args.cache_dir, args.url)
        except fetch.FetchError as err:
            print(f'error: {err}', file=sys.stderr)
            return 1
        print(f'{"downloaded" if got.downloaded else "using cached"} {got.path} '
              f'(sha256 {got.sha256})')
        args.source = got.path
    elif args.source is None:
        args.source = SOURCE_NAME
    if not Path(args.source).is_file():
        print(f'error: {args.source} not found (download {SOURCE_NAME} from pytorch-fid\'s '
              f"release 'fid_weights', or run `{fetch_command(args.out)}`)", file=sys.stderr)
        return 2
    try:
        digest = convert(args.source, args.out, verify_source=not args.no_verify_source)
    except (ImportError, OSError, ValueError) as err:
        print(f'error: {" ".join(str(err).split())}', file=sys.stderr)
        return 2
    print(f'wrote {args.out} (params sha256 {digest}, source sha256 in {SOURCE_DIGEST_KEY})')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
