"""Readers of input files: one function per kind of file, every failure one ConfigError line.

Every reader takes the path and the config field or flag the path came from, and returns the
checked contents or raises :class:`ConfigError` ``(field, path, what was expected; what was
found)``, one line, whatever is wrong with the file: missing, empty, truncated at any offset,
garbage bytes, a wrong dtype (string and object dtypes included: object arrays would need
pickle and are refused unread), a wrong shape or ndim, a ``.npy`` header that declares more
data than the file holds (checked from the header, before anything is allocated), non-finite
values where values must be finite, an image over ``MAX_IMAGE_PIXELS`` (checked from its
header, before decoding).

Kinds of file:

- :func:`read_mask`: a PDS reference mask ``.npy`` (C, H, W);
- :func:`read_image_array`: images in an ``.npz`` (one of some keys) or ``.npy``;
- :func:`read_sample_file`: a ``--mode=sample`` ``samples_<k>.npz``;
- :func:`image_channels` / :func:`read_image`: one image file (header / decoded);
- :func:`read_fid_stats`: FID reference statistics (``eval.ref_stats``);
- :func:`read_inception_weights`: the converted FID Inception weights (``eval.inception_weights``);
- :func:`read_round_file`: an eval round file (``eval/<ckpt>/round_<k>.npz``);
- :func:`read_eval_report`: an eval report (``eval/report_<ckpt>.json``);

and the general :func:`read_npy`, :func:`read_npz` and :func:`npz_headers` under them, which
check each array against an :class:`ArraySpec`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from pds.runtime.errors import ConfigError

MAX_ARRAY_BYTES = 1 << 36  # 64 GiB: the largest array a reader allocates
MAX_IMAGE_PIXELS = 1 << 26  # 67,108,864 pixels (8192 x 8192), read from the image header
MAX_JSON_BYTES = 1 << 24  # 16 MiB: an eval report holds a few kB
MAX_NPY_HEADER = 10_000  # characters of an .npy header dictionary (numpy's own default)
MAX_DEFLATE_RATIO = 1032  # deflate expands at most ~1032x: a larger declared size is a lie
_DETAIL_CHARS = 240  # of an exception's text quoted in a message

NPY_MAGIC = b'\x93NUMPY'
ZIP_MAGICS = (b'PK\x03\x04', b'PK\x05\x06')
ROUND_KEYS = ('samples', 'pool_3', 'logits', 'index', 'nfe', 'round', 'fingerprint')
_KIND_NAMES = {'u': 'unsigned integer', 'i': 'integer', 'f': 'float', 'c': 'complex',
               'b': 'bool', 'U': 'str'}
_MODE_CHANNELS = {'1': 1, 'L': 1, 'I': 1, 'F': 1, 'I;16': 1, 'LA': 2, 'P': 3, 'RGB': 3,
                  'YCbCr': 3, 'HSV': 3, 'LAB': 3, 'RGBA': 4, 'CMYK': 4}
_CONVERT = {1: 'L', 2: 'LA', 3: 'RGB', 4: 'RGBA'}


# ------------------------------------------------------------------------------------------
# Messages


def _one_line(text: Any, limit: int | None = None) -> str:
    """``text`` with every run of whitespace (newlines included) as one space, cut to
    ``limit`` characters."""
    out = ' '.join(str(text).split())
    return out if limit is None or len(out) <= limit else out[:limit - 3] + '...'


def _describe(err: BaseException) -> str:
    return _one_line(f'{type(err).__name__}: {err}', _DETAIL_CHARS)


def fail(field: str, path: Any, expected: str, found: str | None = None) -> ConfigError:
    """The one-line ConfigError of a reader: ``(field, path, expected[; found])``."""
    allowed = _one_line(expected)
    if found:
        allowed += '; ' + _one_line(found, 2 * _DETAIL_CHARS)
    return ConfigError(field, os.fspath(path) if isinstance(path, os.PathLike) else path,
                       allowed)


def _require_file(path: Any, field: str, expected: str) -> str:
    if not isinstance(path, str | os.PathLike) or not str(path):
        raise fail(field, path, expected, 'no path given')
    path = os.fspath(path)
    if not os.path.isfile(path):
        what = 'a directory' if os.path.isdir(path) else 'missing'
        raise fail(field, path, expected, f'the path is {what}')
    return path


# ------------------------------------------------------------------------------------------
# Arrays: .npy and .npz


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """What one array must be.

    kinds: allowed numpy dtype kinds ('u' unsigned, 'i' signed, 'f' float, 'b' bool,
      'U' str); dtypes: further allowed dtypes by name (such as 'uint8').
    ndims: allowed numbers of dimensions (empty: any).
    shape: the exact shape, None for a free dimension (implies the ndim).
    finite: every value must be finite (float and complex arrays).
    """

    kinds: str = 'f'
    ndims: tuple[int, ...] = ()
    shape: tuple[int | None, ...] | None = None
    dtypes: tuple[str, ...] = ()
    finite: bool = False

    def dtype_text(self) -> str:
        """'uint8 or float', 'numeric', ..."""
        kinds = self.kinds
        if set('fiu') <= set(kinds):
            return ' or '.join([*self.dtypes, 'numeric'])
        if set('iu') <= set(kinds):  # signed or unsigned
            kinds = kinds.replace('u', '')
        return ' or '.join([*self.dtypes, *(_KIND_NAMES.get(k, k) for k in kinds)])

    def shape_text(self) -> str:
        """'shape (*, 2048)', 'ndim 3 or 4' or 'any shape'."""
        if self.shape is not None:
            dims = ', '.join('*' if d is None else str(d) for d in self.shape)
            return f'shape ({dims}{"," if len(self.shape) == 1 else ""})'
        return 'ndim ' + ' or '.join(map(str, self.ndims)) if self.ndims else 'any shape'

    def describe(self) -> str:
        """'float of shape (2048, 2048), finite' and the like."""
        return (f'{self.dtype_text()} of {self.shape_text()}'
                + (', finite' if self.finite else ''))


def header_problem(name: str, shape: tuple, dtype: np.dtype, spec: ArraySpec,
                   available: int) -> str | None:
    """The first thing wrong with an array as its header declares it, or None.

    ``available``: the bytes that follow the header (the data must fit in them). Checked
    before any data is read or allocated.
    """
    if dtype.hasobject:
        return f'{name} is an object array ({dtype}), which only pickle could read: refused'
    if dtype.names is not None or dtype.subdtype is not None or dtype.kind == 'V':
        return f'{name} has the structured dtype {dtype}, not {spec.dtype_text()}'
    if dtype.name not in spec.dtypes and dtype.kind not in spec.kinds:
        return f'{name} has dtype {dtype}, not {spec.dtype_text()}'
    if any(not isinstance(d, int) or d < 0 for d in shape):
        return f'{name} declares the invalid shape {shape}'
    if spec.shape is not None:
        if len(shape) != len(spec.shape) or any(w is not None and d != w
                                                for d, w in zip(shape, spec.shape)):
            return f'{name} has shape {tuple(shape)}, not {spec.shape_text()}'
    elif spec.ndims and len(shape) not in spec.ndims:
        return f'{name} has shape {tuple(shape)}, not {spec.shape_text()}'
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        return (f'{name} declares shape {tuple(shape)} of {dtype}: {nbytes} bytes, over the '
                f'{MAX_ARRAY_BYTES}-byte limit (MAX_ARRAY_BYTES)')
    if nbytes > available:
        return (f'{name} declares shape {tuple(shape)} of {dtype}: {nbytes} bytes of data, but '
                f'{max(available, 0)} follow its header (truncated, or a damaged header)')
    return None


def _npy_header(fp) -> tuple[tuple, bool, np.dtype]:
    """(shape, fortran_order, dtype) from an open .npy stream, which is left at the data."""
    fmt = np.lib.format
    version = fmt.read_magic(fp)
    if version == (1, 0):
        return fmt.read_array_header_1_0(fp, max_header_size=MAX_NPY_HEADER)
    if version == (2, 0):
        return fmt.read_array_header_2_0(fp, max_header_size=MAX_NPY_HEADER)
    raise ValueError(f'.npy format version {version[0]}.{version[1]} (1.0 and 2.0 are read)')


def all_finite(arr: np.ndarray, chunk: int = 1 << 22) -> bool:
    """True when every value of ``arr`` is finite (integers always are); reads memory-mapped
    arrays in chunks."""
    if arr.dtype.kind not in 'fc':
        return True
    flat = arr.reshape(-1) if arr.flags.c_contiguous else arr.ravel(order='K')
    return all(bool(np.isfinite(flat[i: i + chunk]).all()) for i in range(0, flat.size, chunk))


def read_npy(path: str, field: str, spec: ArraySpec, expected: str, *,
             mmap: bool = False) -> np.ndarray:
    """The array of an ``.npy`` file, checked against ``spec`` (``mmap``: memory-mapped,
    read-only; ``spec.finite`` is then checked in chunks)."""
    path = _require_file(path, field, expected)
    try:
        size = os.path.getsize(path)
        with open(path, 'rb') as fp:
            shape, _, dtype = _npy_header(fp)
            problem = header_problem('the array', shape, dtype, spec, size - fp.tell())
            if problem:
                raise fail(field, path, expected, problem)
            if mmap and math.prod(shape):  # numpy cannot map an empty array
                arr = np.load(path, mmap_mode='r', allow_pickle=False)
            else:
                fp.seek(0)
                arr = np.lib.format.read_array(fp, allow_pickle=False,
                                               max_header_size=MAX_NPY_HEADER)
    except ConfigError:
        raise
    except Exception as err:  # numpy, the OS and the file raise many types
        raise fail(field, path, expected, f'not a readable .npy file ({_describe(err)})'
                   ) from None
    if spec.finite and not all_finite(arr):
        raise fail(field, path, expected, 'the array holds NaN or infinite values')
    return arr


def _members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    return {info.filename[:-4]: info for info in zf.infolist() if info.filename.endswith('.npy')}


def _member_header(zf: zipfile.ZipFile, key: str, info: zipfile.ZipInfo
                   ) -> tuple[tuple, np.dtype, int]:
    """(shape, dtype, bytes after the header) of one member; ValueError on sizes the
    compressed data cannot hold."""
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise ValueError(f'member {key} declares {info.file_size} bytes but stores '
                         f'{info.compress_size}')
    if (info.compress_type == zipfile.ZIP_DEFLATED
            and info.file_size > MAX_DEFLATE_RATIO * info.compress_size + 1024):
        raise ValueError(f'member {key} declares {info.file_size} bytes from '
                         f'{info.compress_size} compressed bytes')
    with zf.open(info) as fp:
        shape, _, dtype = _npy_header(fp)
        return shape, dtype, info.file_size - fp.tell()


def _keys_text(names: Iterable[str]) -> str:
    names = sorted(names)
    return ', '.join(names[:12]) + (' ...' if len(names) > 12 else '') if names else 'none'


def npz_headers(path: str, field: str, expected: str) -> dict[str, tuple[tuple, np.dtype]]:
    """{key: (shape, dtype)} of every array of an ``.npz``, from the headers alone."""
    path = _require_file(path, field, expected)
    try:
        with zipfile.ZipFile(path) as zf:
            return {key: _member_header(zf, key, info)[:2]
                    for key, info in _members(zf).items()}
    except Exception as err:
        raise fail(field, path, expected, f'not a readable .npz file ({_describe(err)})'
                   ) from None


def read_npz(path: str, field: str, specs: Mapping[str, ArraySpec], expected: str, *,
             required: Sequence[str] | None = None, other: ArraySpec | None = None
             ) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz``: those named in ``specs`` that it holds (each checked
    against its spec) and, with ``other``, every other array (checked against ``other``).

    ``required`` (default: every key of ``specs``) must be present. Every header is checked
    before any data is read; a member whose data is damaged (CRC, decompression, short) is a
    ConfigError like the rest.
    """
    path = _require_file(path, field, expected)
    required = list(specs) if required is None else list(required)
    try:
        with zipfile.ZipFile(path) as zf:
            members = _members(zf)
            missing = [k for k in required if k not in members]
            if missing:
                raise fail(field, path, expected, f'no array {missing[0]!r} (the file holds '
                           f'{_keys_text(members)})')
            chosen = {k: spec for k, spec in specs.items() if k in members}
            if other is not None:
                chosen.update({k: other for k in members if k not in specs})
            for key, spec in chosen.items():
                shape, dtype, available = _member_header(zf, key, members[key])
                problem = header_problem(key, shape, dtype, spec, available)
                if problem:
                    raise fail(field, path, expected, problem)
            out = {}
            for key, spec in chosen.items():
                with zf.open(members[key]) as fp:
                    out[key] = np.lib.format.read_array(fp, allow_pickle=False,
                                                        max_header_size=MAX_NPY_HEADER)
                if spec.finite and not all_finite(out[key]):
                    raise fail(field, path, expected, f'{key} holds NaN or infinite values')
    except ConfigError:
        raise
    except Exception as err:  # zipfile, zlib, numpy and the OS raise many types
        raise fail(field, path, expected, f'not a readable .npz file ({_describe(err)})'
                   ) from None
    return out


def _file_kind(path: str) -> str:
    """'npy', 'npz' or 'other' from the first bytes."""
    with open(path, 'rb') as f:
        head = f.read(6)
    if head.startswith(NPY_MAGIC):
        return 'npy'
    return 'npz' if head[:4] in ZIP_MAGICS else 'other'


# ------------------------------------------------------------------------------------------
# Kinds of file


def read_mask(path: str, field: str, shape_chw: tuple[int, int, int]) -> np.ndarray:
    """A PDS reference mask: an ``.npy`` of shape ``shape_chw`` (C, H, W), numeric and
    finite; returned as float32."""
    shape = tuple(int(d) for d in shape_chw)
    if not isinstance(path, str) or not os.path.isfile(path):
        raise fail(field, path, "an existing .npy file of shape (C, H, W), '' for gain 1, "
                   "or 'stats'")
    spec = ArraySpec(kinds='fiu', shape=shape, finite=True)
    expected = (f'a reference mask .npy of shape (C, H, W) = {shape} for this image size, '
                'numeric and finite')
    return read_npy(path, field, spec, expected).astype(np.float32)


def read_image_array(path: str, field: str, keys: Sequence[str], *, allow_float: bool,
                     ndims: tuple[int, ...] = (4,), channels: Sequence[int] | None = None,
                     mmap: bool = False, allow_npy: bool = True,
                     expected: str | None = None) -> tuple[str, np.ndarray]:
    """(key, images) of an ``.npz`` (the first of ``keys`` it holds) or, if ``allow_npy``,
    an ``.npy`` (key ''; told apart by their first bytes): uint8, or float when
    ``allow_float``; ``ndims`` dimensions, at least one image, the last axis in ``channels``
    when given. ``mmap`` memory-maps an ``.npy``. Values are not checked (the caller's
    range)."""
    what = 'uint8 or float' if allow_float else 'uint8'
    shapes = ' or '.join({3: '(N, H, W)', 4: '(N, H, W, C)'}.get(n, f'ndim {n}') for n in ndims)
    if expected is None:
        expected = (f'an .npz (key {" or ".join(map(repr, keys))}) or .npy of {what} images '
                    f'{shapes}' + (f' with C in {tuple(channels)}' if channels else ''))
    path = _require_file(path, field, expected)
    spec = ArraySpec(kinds='f' if allow_float else '', dtypes=('uint8',), ndims=ndims)
    try:
        kind = _file_kind(path)
    except OSError as err:
        raise fail(field, path, expected, f'unreadable ({_describe(err)})') from None
    if kind == 'other' or (kind == 'npy' and not allow_npy):
        raise fail(field, path, expected, 'the file is empty' if not os.path.getsize(path) else
                   f'the file is {"an .npy" if kind == "npy" else "neither .npz (zip) nor .npy"}'
                   ' (by its first bytes)')
    if kind == 'npy':
        key, arr = '', read_npy(path, field, spec, expected, mmap=mmap)
    else:
        heads = npz_headers(path, field, expected)
        key = next((k for k in keys if k in heads), None)
        if key is None:
            raise fail(field, path, expected, f'no array {" or ".join(map(repr, keys))} '
                       f'(the file holds {_keys_text(heads)})')
        arr = read_npz(path, field, {key: spec}, expected)[key]
    if not len(arr):
        raise fail(field, path, expected, f'no images (shape {arr.shape})')
    if channels and arr.shape[-1] not in channels:
        raise fail(field, path, expected, f'{arr.shape[-1]} channels (shape {arr.shape})')
    return key, arr


def read_sample_file(path: str, key: str = 'samples', field: str = '--workdir'
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(index (n,), rows) of a ``--mode=sample`` file: ``index`` integers and ``key``
    ('samples': uint8 (n, H, W, C); 'raw': float (n, H, W, C)) of as many rows."""
    spec = (ArraySpec(kinds='', dtypes=('uint8',), ndims=(4,)) if key == 'samples'
            else ArraySpec(kinds='f', ndims=(4,)))
    expected = (f"a sample file of --mode=sample with 'index' (n,) integers and {key!r} "
                f'{spec.describe()}')
    data = read_npz(path, field, {'index': ArraySpec(kinds='iu', ndims=(1,)), key: spec},
                    expected)
    if len(data['index']) != len(data[key]):
        raise fail(field, path, expected, f"'index' has {len(data['index'])} rows, {key!r} "
                   f'{len(data[key])}')
    return data['index'], data[key]


def _open_image(path: str, field: str):
    """The PIL image of ``path``, its header read and its size checked (not decoded)."""
    from PIL import Image

    expected = f'a readable image file of at most {MAX_IMAGE_PIXELS} pixels (MAX_IMAGE_PIXELS)'
    path = _require_file(path, field, expected)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as err:
        raise fail(field, path, expected, _one_line(err, _DETAIL_CHARS)) from None
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ...
        raise fail(field, path, expected, f'unreadable ({_describe(err)})') from None
    width, height = im.size
    if width < 1 or height < 1 or width * height > MAX_IMAGE_PIXELS:
        im.close()
        raise fail(field, path, expected, f'its header declares {width} x {height} = '
                   f'{width * height} pixels')
    return im


def image_channels(path: str, field: str) -> int:
    """Channel count of an image file from its header (palette images count as RGB);
    ConfigError if unreadable or over ``MAX_IMAGE_PIXELS``."""
    with _open_image(path, field) as im:
        mode = im.mode
    return 1 if mode.startswith('I;16') else _MODE_CHANNELS.get(mode, 3)


def read_image(path: str, field: str, channels: int) -> np.ndarray:
    """One image file as float32 (H, W, C) in [0, 1]: 8-bit images converted by PIL to
    L / LA / RGB / RGBA (``channels`` 1 to 4) and divided by 255, 16-bit and 32-bit integer
    grey divided by 65535, float grey as is. The size is checked from the header first; a
    PNG's chunk checksums too (PIL decodes a PNG cut after its image data)."""
    with _open_image(path, field) as im:
        if im.format == 'PNG':
            try:
                im.verify()
            except Exception as err:
                raise fail(field, path, 'a readable image file', f'a damaged PNG '
                           f'({_describe(err)})') from None
    with _open_image(path, field) as im:
        try:
            if im.mode.startswith('I;16') or im.mode == 'I':
                arr = np.asarray(im, np.float32) / 65535.0
            elif im.mode == 'F':
                arr = np.asarray(im, np.float32)
                if not all_finite(arr):
                    raise ValueError('float pixels that are NaN or infinite')
            else:
                arr = np.asarray(im.convert(_CONVERT[channels]), np.float32) / 255.0
        except Exception as err:  # truncated or corrupt data: OSError, SyntaxError, ...
            raise fail(field, path, 'a readable image file', f'its data cannot be decoded '
                       f'({_describe(err)})') from None
    return arr[..., None] if arr.ndim == 2 else arr


def read_fid_stats(path: str, field: str = 'eval.ref_stats', dim: int = 2048
                   ) -> tuple[Any, np.ndarray | None]:
    """(``evaluation.metrics.FIDStats``, raw features (N, dim) float32 or None) of a
    reference statistics ``.npz``: ours / pytorch-fid's ``mu`` (dim,), ``sigma``
    (dim, dim), or score_sde's raw ``pool_3`` (N >= 2, dim); raw features, when present, in
    ``features`` (ours) or ``pool_3``; all finite."""
    from evaluation import metrics

    expected = (f'a FID statistics .npz of {dim}-d pool_3 features: mu ({dim},) and sigma '
                f'({dim}, {dim}), or pool_3 (N, {dim}); finite (--mode=stats writes one)')
    if not isinstance(path, str) or not os.path.isfile(path):
        raise fail(field, path, "an existing reference statistics .npz (--mode=stats writes "
                   "one), or '' to skip FID and KID")
    heads = npz_headers(path, field, expected)
    if {'mu', 'sigma'} <= set(heads):
        mu, sigma = heads['mu'][0], heads['sigma'][0]
        if tuple(mu) != (dim,) or tuple(sigma) != (dim, dim):
            raise fail(field, path, f'statistics of {dim}-d pool_3 features', 'mismatched '
                       f'dimensions: the file has mu {tuple(mu)}, sigma {tuple(sigma)}')
    elif 'pool_3' not in heads:
        raise fail(field, path, expected, f'the file holds {_keys_text(heads)}')
    feat_key = next((k for k in ('features', 'pool_3') if k in heads), None)
    if feat_key is not None and (len(heads[feat_key][0]) != 2 or heads[feat_key][0][1] != dim):
        raise fail(field, path, f'raw features of shape (N, {dim})', 'mismatched dimensions: '
                   f'{feat_key} has shape {tuple(heads[feat_key][0])}')
    specs = {'mu': ArraySpec(kinds='fiu', shape=(dim,), finite=True),
             'sigma': ArraySpec(kinds='fiu', shape=(dim, dim), finite=True),
             'num_images': ArraySpec(kinds='iu', shape=()),
             'resize': ArraySpec(kinds='U', shape=()),
             'features': ArraySpec(kinds='fiu', shape=(None, dim), finite=True),
             'pool_3': ArraySpec(kinds='fiu', shape=(None, dim), finite=True)}
    arrays = read_npz(path, field, specs, expected, required=())
    try:
        stats = metrics.stats_from_arrays(arrays, path)
    except ValueError as err:
        raise fail(field, path, expected, str(err)) from None
    feats = None if feat_key is None else np.asarray(arrays[feat_key], np.float32)
    return stats, feats


def read_inception_weights(path: str, field: str = 'eval.inception_weights'
                           ) -> tuple[dict, str]:
    """(params tree of ``FIDInceptionV3``, params SHA-256) of the converted weights
    ``.npz``: one finite float array per parameter with the network's shapes and the
    digest entry that matches them (``evaluation.inception_weights``)."""
    from evaluation import inception_weights as iw
    from evaluation.inception import param_shapes

    if not isinstance(path, str) or not path:
        raise fail(field, path, 'a path to the converted FID Inception weights (.npz)')
    if not os.path.isfile(path):
        raise fail(field, path, iw.not_found_message(path))
    expected = (f'the converted FID Inception weights (.npz of float arrays, finite, with '
                f'{iw.DIGEST_KEY}; `{iw.convert_command(path)}` writes them)')
    specs = {k: ArraySpec(kinds='f', shape=s, finite=True) for k, s in param_shapes().items()}
    specs[iw.DIGEST_KEY] = ArraySpec(kinds='U', shape=())
    specs[iw.SOURCE_DIGEST_KEY] = ArraySpec(kinds='U', shape=())
    flat = read_npz(path, field, specs, expected, required=(iw.DIGEST_KEY,),
                    other=ArraySpec(kinds='f', finite=True))
    digest = str(flat[iw.DIGEST_KEY])
    try:
        params = iw.params_from_flat(flat, path)
    except ValueError as err:
        raise fail(field, path, expected, str(err)) from None
    return params, digest


def read_round_file(path: str, field: str = '--workdir', keys: Sequence[str] = ROUND_KEYS
                    ) -> dict[str, Any]:
    """The arrays ``keys`` of an eval round file, checked: samples uint8 (n, H, W, C),
    pool_3 (n, 2048) and logits (n, 1008) finite floats, index and nfe (n,) integers, round
    an integer and fingerprint a str (both returned as Python values); n the same for all.
    Whether it belongs to the current settings is the caller's question."""
    specs = {'samples': ArraySpec(kinds='', dtypes=('uint8',), ndims=(4,)),
             'pool_3': ArraySpec(kinds='f', shape=(None, 2048), finite=True),
             'logits': ArraySpec(kinds='f', shape=(None, 1008), finite=True),
             'index': ArraySpec(kinds='iu', ndims=(1,)),
             'nfe': ArraySpec(kinds='iu', ndims=(1,)),
             'round': ArraySpec(kinds='iu', shape=()),
             'fingerprint': ArraySpec(kinds='U', shape=())}
    expected = ('an eval round file (samples uint8 (n, H, W, C); pool_3 (n, 2048) and logits '
                '(n, 1008) finite floats; index and nfe (n,) integers; round an integer; '
                'fingerprint a str)')
    data = read_npz(path, field, {k: specs[k] for k in keys}, expected)
    rows = {k: len(v) for k, v in data.items() if v.ndim}
    if len(set(rows.values())) > 1:
        raise fail(field, path, expected, 'arrays of different lengths: ' + ', '.join(
            f'{k} {n}' for k, n in rows.items()))
    if 'round' in data:
        data['round'] = int(data['round'])
    if 'fingerprint' in data:
        data['fingerprint'] = str(data['fingerprint'])
    return data


def read_eval_report(path: str, field: str = '--workdir') -> dict:
    """An eval report: a JSON object of at most ``MAX_JSON_BYTES`` in UTF-8. Its contents
    (fingerprint, sample count) are the caller's to compare."""
    expected = f'an eval report (a JSON object of at most {MAX_JSON_BYTES} bytes)'
    path = _require_file(path, field, expected)
    try:
        size = os.path.getsize(path)
        if size > MAX_JSON_BYTES:
            raise fail(field, path, expected, f'the file has {size} bytes')
        with open(path, 'rb') as f:
            report = json.loads(f.read().decode('utf-8'))
    except ConfigError:
        raise
    except Exception as err:  # OSError, UnicodeDecodeError, JSONDecodeError, RecursionError
        raise fail(field, path, expected, f'not readable JSON ({_describe(err)})') from None
    if not isinstance(report, dict):
        raise fail(field, path, expected, f'the JSON holds a {type(report).__name__}')
    return report


def read_data_spectrum(path: str, shape_hwc: tuple[int, int, int],
                       field: str = 'sampling.prior_stats') -> tuple[np.ndarray, np.ndarray]:
    """(per-channel mean (C,), centred power spectrum (C, H, W)) of a ``--mode=stats``
    ``spectrum.npz`` (``pds.modes.stats``), in [0, 1] data units, checked against the
    config's image shape."""
    h, w, c = shape_hwc
    expected = f'a stats/spectrum.npz of {c}-channel {h}x{w} images (python main.py --mode=stats)'
    data = read_npz(path, field, {'mean': ArraySpec(shape=(c,), finite=True),
                                  'power_centered': ArraySpec(shape=(c, h, w), finite=True)},
                    expected)
    if np.any(data['power_centered'] < 0):
        raise fail(field, path, expected, 'negative power')
    return data['mean'].astype(np.float64), data['power_centered'].astype(np.float64)
