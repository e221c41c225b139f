"""Input file readers (pds/storage/readers.py): every damaged variant of every kind of file is
one ConfigError line naming the file (no other exception type), the valid file reads back
exactly, and main.py turns a damaged input into exit code 2 with one 'error:' line.

Each fuzz test builds a valid file here, then at least 30 damaged variants: truncations at
several offsets (inside the header too), zero length, garbage bytes, wrong / string / object
dtypes, wrong shapes and ndims, headers declaring huge shapes, NaN and infinity, missing keys,
extra nesting; images declaring 20000 x 20000 pixels (a small PNG whose IHDR is patched).
"""

from __future__ import annotations

import io
import logging
import os
import struct
import subprocess
import sys
import types
import zipfile
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from pds.runtime.errors import ConfigError
from pds.storage import outputs, readers
from tests.helpers.paths import ROOT, jax_env

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------ helpers


def check_refused(read: Callable[[str], object], tmp_path, variants: dict[str, bytes],
                  suffix: str, min_variants: int = 30) -> dict[str, str]:
    """Write each variant to a file and read it: each must be a one-line ConfigError naming
    the file. Returns {variant: message}; fails listing every variant that was accepted or
    raised anything else."""
    assert len(variants) >= min_variants, len(variants)
    folder = tmp_path / 'variants'
    folder.mkdir(exist_ok=True)
    problems, messages = [], {}
    for name, data in variants.items():
        path = folder / f'{name.replace("/", "_")}{suffix}'
        path.write_bytes(data)
        try:
            read(str(path))
        except ConfigError as err:
            msg = str(err)
            if '\n' in msg or '\r' in msg or str(path) not in msg:
                problems.append(f'{name}: message not one line naming the file: {msg!r}')
            messages[name] = msg
        except BaseException as err:  # any other type fails the test
            problems.append(f'{name}: {type(err).__name__}: {err}'[:300])
        else:
            problems.append(f'{name}: accepted')
    assert not problems, '\n'.join(problems)
    return messages


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def raw_npy(header: str, data: bytes = b'', version: int = 1) -> bytes:
    """An .npy with a header dictionary written verbatim (padded to 64 bytes)."""
    size = struct.calcsize('<H' if version == 1 else '<I')
    pad = -(6 + 2 + size + len(header) + 1) % 64
    text = (header + ' ' * pad + '\n').encode('latin1')
    length = struct.pack('<H' if version == 1 else '<I', len(text))
    return b'\x93NUMPY' + bytes([version, 0]) + length + text + data


def header_text(descr: str, shape: tuple, fortran: bool = False) -> str:
    return f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}"


def npz_bytes(compressed: bool = False, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def npz_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def member_data_span(data: bytes, key: str) -> tuple[int, int]:
    """(start, end) of member ``key``'s stored bytes inside an .npz."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(key + '.npy')
    n, m = struct.unpack('<HH', data[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + n + m
    return start, start + info.compress_size


def truncations(data: bytes, *extra: int) -> dict[str, bytes]:
    cuts = {0, 1, 4, 6, 8, 9, 10, 12, 20, 40, 60, len(data) // 3, len(data) // 2,
            len(data) - 1, *extra}
    return {f'truncated_at_{c}': data[:c] for c in sorted(cuts) if 0 <= c < len(data)}


def garbage(data: bytes) -> dict[str, bytes]:
    return {'empty': b'', 'garbage_random': RNG.bytes(max(len(data), 64)),
            'garbage_text': b'this is not the file you are looking for\n' * 3,
            'garbage_zeros': bytes(max(len(data), 64))}


def huge_member(arr: np.ndarray) -> bytes:
    """An .npy whose header declares ~10^12 rows of ``arr``'s dtype, with a little data."""
    shape = (10**12, *arr.shape[1:]) if arr.ndim else (10**12,)
    return raw_npy(header_text(np.lib.format.dtype_to_descr(arr.dtype), shape), b'\0' * 64)


def npz_variants(arrays: dict[str, np.ndarray], required: list[str]) -> dict[str, bytes]:
    """Damaged variants of ``np.savez(**arrays)`` shared by every .npz kind."""
    valid = npz_bytes(**arrays)
    members = npz_members(valid)
    biggest = max(required, key=lambda k: arrays[k].nbytes)  # a member the reader reads
    start, end = member_data_span(valid, biggest)
    crc = bytearray(valid)
    crc[end - 8: end] = b'\xa5' * 8
    out = {**truncations(valid, start - 1, start + 3, (start + end) // 2, end - 1),
           **garbage(valid)}
    out.update({
        'npy_not_npz': npy_bytes(arrays[biggest]),
        'zip_of_text': zip_bytes({'readme.txt': b'hello'}),
        'data_crc_mismatch': bytes(crc),
        'nested_npz_in_member': zip_bytes({**members, f'{required[0]}.npy': valid}),
        'compressed_truncated': npz_bytes(compressed=True, **arrays)[:-30],
        'member_header_garbage': zip_bytes({**members, f'{biggest}.npy': b'\x93NUMPY\x01\x00'
                                            + RNG.bytes(120)}),
    })
    for key in required:
        arr = arrays[key]
        rest = {k: a for k, a in arrays.items() if k != key}
        out[f'missing_{key}'] = npz_bytes(**rest)
        out[f'object_{key}'] = npz_bytes(**rest, **{key: np.array([None, {}], object)})
        out[f'extra_nesting_{key}'] = npz_bytes(**rest, **{key: arr[None]})
        out[f'huge_header_{key}'] = zip_bytes({**members, f'{key}.npy': huge_member(arr)})
        if arr.dtype.kind != 'U':
            out[f'string_{key}'] = npz_bytes(**rest, **{key: np.full(arr.shape, 'x')})
    return out


def with_arrays(arrays: dict[str, np.ndarray], **changed) -> bytes:
    return npz_bytes(**{**arrays, **changed})


# ------------------------------------------------------------------------------ masks (.npy)


def test_mask_fuzz(tmp_path):
    shape = (3, 8, 8)
    mask = RNG.uniform(0.5, 2.0, shape).astype(np.float32)
    valid = npy_bytes(mask)
    (tmp_path / 'valid.npy').write_bytes(valid)
    np.testing.assert_array_equal(
        readers.read_mask(str(tmp_path / 'valid.npy'), 'sampling.pds.freq_mask', shape), mask)
    header_end = len(valid) - mask.nbytes
    nan, inf = mask.copy(), mask.copy()
    nan[1, 2, 3] = np.nan
    inf[0, 0, 0] = -np.inf
    data = mask.tobytes()
    variants = {**truncations(valid, header_end - 1, header_end, header_end + 1,
                              header_end + 7), **garbage(valid)}
    variants.update({
        'nan_value': npy_bytes(nan), 'inf_value': npy_bytes(inf),
        'nan_bytes': valid[:header_end] + b'\xff' * mask.nbytes,
        'wrong_shape': npy_bytes(mask[:, :4]), 'wrong_ndim': npy_bytes(mask[0]),
        'extra_nesting': npy_bytes(mask[None]), 'scalar': npy_bytes(np.float32(1.0)),
        'bool_dtype': npy_bytes(mask > 1), 'complex_dtype': npy_bytes(mask.astype(np.complex64)),
        'str_dtype': npy_bytes(np.full(shape, 'a')), 'bytes_dtype': npy_bytes(np.full(shape, b'a')),
        'object_dtype': npy_bytes(mask.astype(object)),
        'structured_dtype': npy_bytes(np.zeros(shape, [('a', '<f4')])),
        'datetime_dtype': npy_bytes(np.zeros(shape, 'datetime64[s]')),
        'huge_header_shape': raw_npy(header_text('<f4', (10**6, 10**6, 10**6)), data),
        'negative_shape': raw_npy(header_text('<f4', (-3, 8, 8)), data),
        'float_shape': raw_npy(header_text('<f4', (3.0, 8, 8)), data),
        'header_not_a_dict': raw_npy('[1, 2, 3]', data),
        'header_syntax_error': raw_npy("{'descr': '<f4', 'shape': (3, 8", data),
        'header_missing_key': raw_npy("{'descr': '<f4', 'shape': (3, 8, 8)}", data),
        'header_bad_descr': raw_npy(header_text('nonsense', shape), data),
        'header_length_huge': b'\x93NUMPY\x02\x00' + struct.pack('<I', 2**31) + b'{' * 100,
        'version_3': raw_npy(header_text('<f4', shape), data, version=3),
        'version_9': b'\x93NUMPY\x09\x00' + valid[8:],
        'bad_magic': b'\x93NUMPZ' + valid[6:],
        'npz_not_npy': npz_bytes(mask=mask),
    })
    messages = check_refused(lambda p: readers.read_mask(p, 'sampling.pds.freq_mask', shape),
                             tmp_path, variants, '.npy')
    assert all(m.startswith('invalid sampling.pds.freq_mask=') for m in messages.values())
    assert '(3, 8, 8)' in messages['wrong_shape'] and 'NaN' in messages['nan_value']
    assert 'pickle' in messages['object_dtype']


# ------------------------------------------------------------------------------ image arrays


def test_image_array_fuzz(tmp_path):
    images = RNG.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    arrays = {'samples': images}
    valid = npz_bytes(**arrays)
    (tmp_path / 'valid.npz').write_bytes(valid)

    def read(path):
        return readers.read_image_array(path, '--source', ('samples', 'arr_0'),
                                        allow_float=False, channels=(1, 3), allow_npy=False)

    key, back = read(str(tmp_path / 'valid.npz'))
    assert key == 'samples' and np.array_equal(back, images)
    variants = npz_variants(arrays, ['samples'])
    variants.update({
        'float_dtype': with_arrays(arrays, samples=images / 255.0),
        'int64_dtype': with_arrays(arrays, samples=images.astype(np.int64)),
        'bool_dtype': with_arrays(arrays, samples=images > 0),
        'wrong_ndim_3': with_arrays(arrays, samples=images[..., 0]),
        'wrong_ndim_1': with_arrays(arrays, samples=images.reshape(-1)),
        'two_channels': with_arrays(arrays, samples=images[..., :2]),
        'four_channels': with_arrays(arrays, samples=np.concatenate([images, images[..., :1]],
                                                                    -1)),
        'no_images': with_arrays(arrays, samples=images[:0]),
        'other_key_only': npz_bytes(images=images),
    })
    messages = check_refused(read, tmp_path, variants, '.npz')
    assert all(m.startswith("invalid --source='") for m in messages.values())
    assert 'MAX_ARRAY_BYTES' in messages['huge_header_samples'] or \
        'follow its header' in messages['huge_header_samples']


def test_image_array_npy_and_float(tmp_path):
    """The data.path reader: .npy (memory-mapped) or .npz, uint8 or float, 3-d or 4-d."""
    images = RNG.uniform(size=(2, 4, 4)).astype(np.float32)
    np.save(tmp_path / 'x.npy', images)
    key, back = readers.read_image_array(str(tmp_path / 'x.npy'), 'data.path',
                                         ('images', 'arr_0'), allow_float=True, ndims=(3, 4),
                                         mmap=True)
    assert key == '' and isinstance(back, np.memmap) and np.array_equal(back, images)
    data = npy_bytes(images)
    variants = {**truncations(data, len(data) - images.nbytes, len(data) - 5),
                **garbage(data),
                'huge_header': raw_npy(header_text('<f4', (10**9, 4, 4)), b'\0' * 256),
                'str_dtype': npy_bytes(np.full((2, 4, 4), 'a')),
                'object_dtype': npy_bytes(images.astype(object)),
                'int_dtype': npy_bytes(images.astype(np.int32)),
                'ndim_2': npy_bytes(images[0]), 'ndim_5': npy_bytes(images[None, ..., None]),
                'empty_array': npy_bytes(images[:0])}
    for name, blob in list(variants.items())[:12]:
        variants[name + '_as_npz'] = zip_bytes({'images.npy': blob}) if blob else b''
    check_refused(lambda p: readers.read_image_array(p, 'data.path', ('images', 'arr_0'),
                                                     allow_float=True, ndims=(3, 4),
                                                     mmap=True),
                  tmp_path, variants, '.npy')


# ------------------------------------------------------------------------------ sample files


def test_sample_file_fuzz(tmp_path):
    arrays = {'samples': RNG.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8),
              'index': np.array([4, 5]), 'raw': RNG.normal(size=(2, 4, 4, 3)).astype(np.float32)}
    (tmp_path / 'valid.npz').write_bytes(npz_bytes(**arrays))
    index, rows = readers.read_sample_file(str(tmp_path / 'valid.npz'))
    assert np.array_equal(index, arrays['index']) and np.array_equal(rows, arrays['samples'])
    _, raw = readers.read_sample_file(str(tmp_path / 'valid.npz'), 'raw')
    assert np.array_equal(raw, arrays['raw'])
    variants = npz_variants(arrays, ['samples', 'index'])
    variants.update({
        'samples_float': with_arrays(arrays, samples=arrays['raw']),
        'index_float': with_arrays(arrays, index=np.array([4.0, 5.0])),
        'index_2d': with_arrays(arrays, index=np.array([[4, 5]])),
        'rows_differ': with_arrays(arrays, index=np.array([4, 5, 6])),
    })
    check_refused(lambda p: readers.read_sample_file(p, 'samples', '--workdir'), tmp_path,
                  variants, '.npz')


# ------------------------------------------------------------------------------ image files


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format='PNG')
    return buf.getvalue()


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def patch_ihdr(png: bytes, width: int | None = None, height: int | None = None,
               **fields: int) -> bytes:
    """The PNG with IHDR's width / height / one-byte fields replaced and its CRC recomputed
    (the image data is left as it was: the header is read before any decoding)."""
    ihdr = bytearray(png[16:29])
    if width is not None:
        ihdr[0:4] = struct.pack('>I', width)
    if height is not None:
        ihdr[4:8] = struct.pack('>I', height)
    for name, value in fields.items():
        ihdr[{'depth': 8, 'color': 9, 'compression': 10, 'filter': 11, 'interlace': 12}[name]
             ] = value
    return png[:8] + chunk(b'IHDR', bytes(ihdr)) + png[33:]


def idat_span(png: bytes) -> tuple[int, int]:
    start = png.index(b'IDAT') - 4
    length = struct.unpack('>I', png[start: start + 4])[0]
    return start, start + 12 + length


def test_image_file_fuzz(tmp_path):
    image = RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    valid = png_bytes(image)
    (tmp_path / 'valid.png').write_bytes(valid)
    assert readers.image_channels(str(tmp_path / 'valid.png'), 'data.path') == 3
    back = readers.read_image(str(tmp_path / 'valid.png'), 'data.path', 3)
    assert back.dtype == np.float32 and np.array_equal(back, image / np.float32(255.0))
    start, end = idat_span(valid)
    variants = {name: blob for name, blob in truncations(
        valid, 16, 29, 33, start + 10, (start + end) // 2, end - 5, end - 2, end, end + 4).items()
                if len(blob) <= end + 4}  # cut inside its last chunk (IEND), a PNG is whole
    variants.update(garbage(valid))
    bmp = io.BytesIO()
    Image.fromarray(image).save(bmp, format='BMP')
    bmp = bmp.getvalue()
    nan_tiff = io.BytesIO()
    Image.fromarray(np.full((4, 4), np.nan, np.float32), mode='F').save(nan_tiff, format='TIFF')
    variants.update({
        'declares_20000x20000': patch_ihdr(valid, 20000, 20000),
        'declares_9000x9000': patch_ihdr(valid, 9000, 9000),
        'declares_65535x65535': patch_ihdr(valid, 65535, 65535),
        'declares_1x100000000': patch_ihdr(valid, 1, 100_000_000),
        'declares_width_0': patch_ihdr(valid, 0, 16),
        'bad_bit_depth': patch_ihdr(valid, depth=3),
        'bad_color_type': patch_ihdr(valid, color=5),
        'bad_signature': b'\x89PNX' + valid[4:],
        'ihdr_crc_wrong': valid[:29] + b'\0\0\0\0' + valid[33:],
        'idat_garbage': valid[:start] + chunk(b'IDAT', RNG.bytes(end - start - 12)) + valid[end:],
        'idat_missing': valid[:start] + valid[end:],
        'idat_empty': valid[:start] + chunk(b'IDAT', b'') + valid[end:],
        'idat_short_stream': valid[:start] + chunk(b'IDAT', zlib.compress(b'\0' * 10))
        + valid[end:],
        'bmp_declares_20000x20000': bmp[:18] + struct.pack('<ii', 20000, 20000) + bmp[26:],
        'bmp_truncated': bmp[:len(bmp) // 2],
        'tiff_nan_pixels': nan_tiff.getvalue(),
        'npz_named_png': npz_bytes(images=image),
    })
    messages = check_refused(lambda p: readers.read_image(p, 'data.path', 3), tmp_path,
                             variants, '.png')
    assert str(readers.MAX_IMAGE_PIXELS) in messages['declares_9000x9000']
    assert str(readers.MAX_IMAGE_PIXELS) in messages['declares_20000x20000']
    # the header alone (ImageFolder's channel count) already refuses what is too large
    for name in ('declares_20000x20000', 'declares_9000x9000', 'bmp_declares_20000x20000'):
        path = tmp_path / 'variants' / f'{name}.png'
        with pytest.raises(ConfigError, match='MAX_IMAGE_PIXELS'):
            readers.image_channels(str(path), '--source')


def test_image_folder_shares_the_reader(tmp_path):
    """Both image-folder code paths (data.path folders, --mode=fid folders) refuse a huge
    image from its header, as one ConfigError naming their field."""
    from pds.data.pipelines import FolderSource, ImageFolder

    folder = tmp_path / 'images'
    folder.mkdir()
    image = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    (folder / 'a.png').write_bytes(png_bytes(image))
    (folder / 'b.png').write_bytes(patch_ihdr(png_bytes(image), 20000, 20000))
    for make, field in ((lambda: ImageFolder(str(folder), '--source'), '--source'),
                        (lambda: FolderSource(str(folder), 8, 3), 'data.path')):
        with pytest.raises(ConfigError) as err:
            make()
        msg = str(err.value)
        assert msg.startswith(f'invalid {field}=') and str(folder / 'b.png') in msg
        assert '\n' not in msg and '400000000 pixels' in msg and 'MAX_IMAGE_PIXELS' in msg


# ------------------------------------------------------------------------------ FID statistics


def stats_arrays(dim: int = 16, n: int = 8) -> dict[str, np.ndarray]:
    feats = RNG.normal(size=(n, dim)).astype(np.float32)
    return {'mu': feats.mean(0).astype(np.float64), 'sigma': np.cov(feats.T.astype(np.float64)),
            'num_images': np.int64(n), 'resize': np.array('bilinear'), 'features': feats}


def test_fid_stats_fuzz(tmp_path):
    dim = 16
    arrays = stats_arrays(dim)
    (tmp_path / 'valid.npz').write_bytes(npz_bytes(**arrays))
    stats, feats = readers.read_fid_stats(str(tmp_path / 'valid.npz'), 'eval.ref_stats', dim)
    np.testing.assert_array_equal(stats.mu, arrays['mu'])
    np.testing.assert_array_equal(stats.sigma, arrays['sigma'])
    assert stats.num_images == 8 and stats.resize == 'bilinear'
    np.testing.assert_array_equal(feats, arrays['features'])
    np.savez(tmp_path / 'sde.npz', pool_3=arrays['features'])  # score_sde's format
    stats, feats = readers.read_fid_stats(str(tmp_path / 'sde.npz'), 'eval.ref_stats', dim)
    assert stats.num_images == 8 and feats.shape == (8, dim)

    mu, sigma, f = arrays['mu'], arrays['sigma'], arrays['features']
    nan_mu, inf_sigma, nan_f = mu.copy(), sigma.copy(), f.copy()
    nan_mu[3], inf_sigma[2, 5], nan_f[1, 1] = np.nan, np.inf, np.nan
    variants = npz_variants(arrays, ['mu', 'sigma'])
    variants.update({
        'nan_mu': with_arrays(arrays, mu=nan_mu), 'inf_sigma': with_arrays(arrays, sigma=inf_sigma),
        'nan_features': with_arrays(arrays, features=nan_f),
        'mu_other_dim': with_arrays(arrays, mu=mu[:8], sigma=sigma[:8, :8]),
        'sigma_not_square': with_arrays(arrays, sigma=sigma[:, :8]),
        'sigma_3d': with_arrays(arrays, sigma=sigma[None]),
        'features_other_dim': with_arrays(arrays, features=f[:, :4]),
        'features_1d': with_arrays(arrays, features=f[0]),
        'mu_complex': with_arrays(arrays, mu=mu.astype(complex)),
        'mu_bool': with_arrays(arrays, mu=mu > 0),
        'num_images_str': with_arrays(arrays, num_images=np.array('eight')),
        'num_images_vector': with_arrays(arrays, num_images=np.arange(3)),
        'resize_int': with_arrays(arrays, resize=np.int64(3)),
        'resize_object': with_arrays(arrays, resize=np.array(['a', None], object)),
        'neither_format': npz_bytes(logits=f),
        'pool_3_one_row': npz_bytes(pool_3=f[:1]),
        'pool_3_other_dim': npz_bytes(pool_3=f[:, :8]),
        'pool_3_nan': npz_bytes(pool_3=nan_f),
    })
    messages = check_refused(lambda p: readers.read_fid_stats(p, 'eval.ref_stats', dim),
                             tmp_path, variants, '.npz')
    assert 'mismatched dimensions' in messages['mu_other_dim']
    assert 'NaN' in messages['inf_sigma'] or 'infinite' in messages['inf_sigma']


def test_evaluation_load_stats_raises_value_error_only(tmp_path):
    """evaluation/ stays free of pds/: its own reader gives ValueError (converted by pds/)."""
    from evaluation import metrics

    arrays = stats_arrays()
    variants = npz_variants(arrays, ['mu', 'sigma'])
    variants['nan_mu'] = with_arrays(arrays, mu=np.full(16, np.nan))
    for name, data in variants.items():
        path = tmp_path / f'{name}.npz'
        path.write_bytes(data)
        with pytest.raises(ValueError) as err:
            metrics.load_stats(path)
        assert not isinstance(err.value, ConfigError) and '\n' not in str(err.value), name


# ------------------------------------------------------------------------------ Inception weights


TINY_LAYOUT = {'Conv2d_1a_3x3/kernel': (3, 3, 3, 4), 'Conv2d_1a_3x3/scale': (4,),
               'fc/kernel': (4, 5), 'fc/bias': (5,)}


@pytest.fixture
def tiny_inception(monkeypatch):
    """The weights readers against a four-parameter layout (the real file is 95 MB)."""
    from evaluation import inception
    from evaluation import inception_weights as iw

    monkeypatch.setattr(inception, 'param_shapes', lambda: dict(TINY_LAYOUT))
    monkeypatch.setattr(iw, 'param_shapes', lambda: dict(TINY_LAYOUT))
    return iw


def test_inception_weights_fuzz(tmp_path, tiny_inception):
    iw = tiny_inception
    flat = {k: RNG.normal(size=s).astype(np.float32) for k, s in TINY_LAYOUT.items()}
    digest = iw.save_params(flat, tmp_path / 'valid.npz')
    params, got = readers.read_inception_weights(str(tmp_path / 'valid.npz'))
    assert got == digest
    np.testing.assert_array_equal(params['fc']['kernel'], flat['fc/kernel'])
    arrays = {**flat, iw.DIGEST_KEY: np.array(digest), iw.SOURCE_DIGEST_KEY: np.array('')}

    def signed(**changed):  # a file whose digest matches its (damaged) arrays
        new = {**flat, **changed}
        return npz_bytes(**new, **{iw.DIGEST_KEY: np.array(iw.params_digest(new))})

    nan = flat['fc/bias'].copy()
    nan[0] = np.nan
    variants = npz_variants(arrays, ['fc/kernel', iw.DIGEST_KEY])
    variants.update({
        'digest_wrong': with_arrays(arrays, **{iw.DIGEST_KEY: np.array('0' * 64)}),
        'digest_int': with_arrays(arrays, **{iw.DIGEST_KEY: np.int64(1)}),
        'source_digest_object': with_arrays(arrays, **{iw.SOURCE_DIGEST_KEY: np.array([None])}),
        'value_changed': with_arrays(arrays, **{'fc/bias': flat['fc/bias'] + 1}),
        'nan_signed': signed(**{'fc/bias': nan}),
        'inf_signed': signed(**{'fc/bias': np.full(5, np.inf, np.float32)}),
        'int_param_signed': signed(**{'fc/bias': np.arange(5)}),
        'wrong_shape_signed': signed(**{'fc/kernel': flat['fc/kernel'].T}),
        'missing_param': npz_bytes(**{k: v for k, v in arrays.items() if k != 'fc/bias'}),
        'extra_param_signed': signed(**{'extra/bias': np.zeros(3, np.float32)}),
    })
    messages = check_refused(readers.read_inception_weights, tmp_path, variants, '.npz')
    assert all(m.startswith('invalid eval.inception_weights=') for m in messages.values())
    assert 'checksum mismatch' in messages['value_changed']
    missing = tmp_path / 'absent.npz'
    with pytest.raises(ConfigError, match=r'python -m evaluation\.inception_weights'):
        readers.read_inception_weights(str(missing))
    # evaluation's own loader: ValueError only, one line
    for name in variants:
        with pytest.raises(ValueError) as err:
            iw.load_inception_params(tmp_path / 'variants' / f'{name.replace("/", "_")}.npz')
        assert not isinstance(err.value, ConfigError) and '\n' not in str(err.value), name


def test_state_dict_to_flat_refuses_malformed_entries():
    from evaluation import inception_weights as iw

    good = np.zeros((2, 2, 1, 1), np.float32)
    for sd in ({3: good}, {'Mixed_5b.branch1x1.conv.weight': 'text'},
               {'Mixed_5b.branch1x1.conv.weight': [[1.0]]},
               {'Mixed_5b.branch1x1.conv.weight': np.zeros(3)},
               {'Mixed_5b.branch1x1.conv.weight': np.array(['a'])},
               {'fc.running_mean': np.zeros(3)}, {'fc': np.zeros(3)}, {'': good}, ['x']):
        with pytest.raises(ValueError) as err:
            iw.state_dict_to_flat(sd)
        assert '\n' not in str(err.value)


# ------------------------------------------------------------------------------ eval round files


ROUND_FP = 'f' * 64


def round_arrays(k: int = 0, rows: int = 2, fp: str = ROUND_FP) -> dict[str, np.ndarray]:
    return {'samples': RNG.integers(0, 256, (rows, 4, 4, 3), dtype=np.uint8),
            'pool_3': RNG.normal(size=(rows, 2048)).astype(np.float32),
            'logits': RNG.normal(size=(rows, 1008)).astype(np.float32),
            'index': np.arange(k * rows, (k + 1) * rows), 'round': np.int64(k),
            'nfe': np.full(rows, 6, np.int32), 'fingerprint': np.array(fp)}


def test_round_file_fuzz(tmp_path):
    arrays = round_arrays()
    (tmp_path / 'valid.npz').write_bytes(npz_bytes(compressed=True, **arrays))
    back = readers.read_round_file(str(tmp_path / 'valid.npz'))
    assert back['fingerprint'] == ROUND_FP and back['round'] == 0
    for key in ('samples', 'pool_3', 'logits', 'index', 'nfe'):
        np.testing.assert_array_equal(back[key], arrays[key])
    nan = arrays['pool_3'].copy()
    nan[1, 7] = np.nan
    variants = npz_variants(arrays, list(readers.ROUND_KEYS))
    variants.update({
        'pool_3_nan': with_arrays(arrays, pool_3=nan),
        'logits_inf': with_arrays(arrays, logits=np.full((2, 1008), np.inf, np.float32)),
        'pool_3_other_dim': with_arrays(arrays, pool_3=arrays['pool_3'][:, :64]),
        'logits_1d': with_arrays(arrays, logits=arrays['logits'][0]),
        'pool_3_int': with_arrays(arrays, pool_3=arrays['pool_3'].astype(np.int32)),
        'samples_float': with_arrays(arrays, samples=arrays['samples'] / 255.0),
        'index_float': with_arrays(arrays, index=np.array([0.0, 1.0])),
        'round_float': with_arrays(arrays, round=np.float64(0)),
        'round_vector': with_arrays(arrays, round=np.array([0])),
        'fingerprint_bytes': with_arrays(arrays, fingerprint=np.array(b'abc')),
        'fingerprint_int': with_arrays(arrays, fingerprint=np.int64(7)),
        'rows_differ': with_arrays(arrays, nfe=np.full(3, 6, np.int32)),
    })
    messages = check_refused(readers.read_round_file, tmp_path, variants, '.npz')
    assert all(m.startswith("invalid --workdir='") for m in messages.values())


def _eval_context(workdir, num_samples: int = 4):
    return types.SimpleNamespace(workdir=str(workdir), num_samples=num_samples)


def test_finished_rounds_redoes_damaged_rounds(tmp_path, caplog):
    """A damaged round file is reported (warning naming it), removed and not counted as
    done; a readable one of other settings stays a ConfigError."""
    from pds.modes import eval as eval_mode

    round_dir = tmp_path / 'eval' / 'exact'
    round_dir.mkdir(parents=True)
    good = npz_bytes(compressed=True, **round_arrays(0))
    files = {0: good,
             1: npz_bytes(compressed=True, **round_arrays(1))[:-40],  # truncated
             2: npz_bytes(**{k: v for k, v in round_arrays(2).items() if k != 'nfe'}),
             3: npz_bytes(**round_arrays(3, rows=3)),  # rows of another batch
             4: npz_bytes(**round_arrays(7)),  # another round's contents
             5: b''}
    for k, data in files.items():
        (round_dir / f'round_{k}.npz').write_bytes(data)
    with caplog.at_level(logging.WARNING):
        done = eval_mode.finished_rounds(str(round_dir), 7, 2, ROUND_FP)
    assert done == {0}
    assert sorted(p.name for p in round_dir.iterdir()) == ['round_0.npz']
    text = caplog.text
    for k in range(1, 6):
        assert str(round_dir / f'round_{k}.npz') in text and 'damaged' in text
    # readable, other settings: refused as before, the file kept
    (round_dir / 'round_1.npz').write_bytes(npz_bytes(**round_arrays(1, fp='0' * 64)))
    with pytest.raises(ConfigError, match='--overwrite'):
        eval_mode.finished_rounds(str(round_dir), 7, 2, ROUND_FP)
    assert (round_dir / 'round_1.npz').exists()


def test_load_round_features_damaged_round_is_one_line(tmp_path):
    from pds.modes import eval as eval_mode

    round_dir = tmp_path / 'exact'
    round_dir.mkdir()
    (round_dir / 'round_0.npz').write_bytes(npz_bytes(**round_arrays(0)))
    (round_dir / 'round_1.npz').write_bytes(npz_bytes(**round_arrays(1))[:500])
    with pytest.raises(ConfigError) as err:
        eval_mode.load_round_features(str(round_dir), 2)
    msg = str(err.value)
    assert '\n' not in msg and str(round_dir / 'round_1.npz') in msg and 'again' in msg
    assert not (round_dir / 'round_1.npz').exists()


# ------------------------------------------------------------------------------ eval reports


def test_eval_report_fuzz(tmp_path, monkeypatch):
    report = {'checkpoint': 'exact', 'fingerprint': ROUND_FP, 'num_samples': 4,
              'fid': 1.5, 'notes': ['a', 'b'], 'timing': {'wall_seconds': 2.0}}
    outputs.write_json(str(tmp_path / 'valid.json'), report)
    assert readers.read_eval_report(str(tmp_path / 'valid.json')) == report
    valid = (tmp_path / 'valid.json').read_bytes()
    text = valid.decode()
    variants = {k: v for k, v in truncations(valid, len(valid) - 3, len(valid) - 2).items()
                if len(v) < len(valid) - 2}  # keep the closing brace out
    variants.update(garbage(valid))
    variants.update({
        'whitespace': b'  \n\t ', 'not_utf8': b'\xff\xfe' + valid,
        'utf16': text.encode('utf-16'), 'bom': b'\xef\xbb\xbf' + valid,
        'array': b'[1, 2, 3]', 'string': b'"report"', 'number': b'4', 'null': b'null',
        'true': b'true', 'nan_literal': b'NaN', 'deep_nesting': b'[' * 200_000,
        'extra_data': valid + b'{}', 'two_objects': b'{}{}', 'single_quotes': b"{'a': 1}",
        'trailing_comma': b'{"a": 1,}', 'unquoted_key': b'{a: 1}',
        'control_char': b'{"a": "x\x01y"}', 'nested_list': b'[' + valid + b']',
        'npz_bytes': npz_bytes(a=np.zeros(3)), 'too_large': valid + b' ' * 100,
    })
    monkeypatch.setattr(readers, 'MAX_JSON_BYTES', len(valid) + 50)
    messages = check_refused(readers.read_eval_report, tmp_path, variants, '.json')
    assert str(len(valid) + 50) in messages['too_large']


def test_damaged_report_is_removed_and_recomputed(tmp_path, caplog):
    from pds.modes import eval as eval_mode

    json_path, npz_path = tmp_path / 'report_exact.json', tmp_path / 'report_exact.npz'
    json_path.write_bytes(b'{"checkpoint": "exact", "fingerpr')
    npz_path.write_bytes(npz_bytes(mu=np.zeros(3)))
    ctx = _eval_context(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert eval_mode._existing_report(ctx, str(json_path), str(npz_path), ROUND_FP) is None
    assert str(json_path) in caplog.text and 'damaged' in caplog.text
    assert not json_path.exists() and not npz_path.exists()
    # readable: the same settings are kept, other settings refused
    outputs.write_json(str(json_path), {'checkpoint': 'exact', 'fingerprint': ROUND_FP,
                                        'num_samples': 4})
    assert eval_mode._existing_report(ctx, str(json_path), str(npz_path), ROUND_FP)[
        'num_samples'] == 4
    with pytest.raises(ConfigError, match='--overwrite'):
        eval_mode._existing_report(ctx, str(json_path), str(npz_path), '0' * 64)
    assert json_path.exists()


# ------------------------------------------------------------------------------ convert


def test_convert_refuses_malformed_entries(tmp_path):
    torch = pytest.importorskip('torch')
    from flax import serialization

    from pds.modes import convert as convert_mode

    w = torch.zeros(4, 3, 3, 3)

    def ckpt(model=None, shadow=None):
        model = {'module.sigmas': torch.ones(3), 'module.all_modules.0.weight': w,
                 'module.all_modules.0.bias': torch.zeros(4)} if model is None else model
        shadow = [w, torch.zeros(4)] if shadow is None else shadow
        return {'model': model, 'ema': {'shadow_params': shadow}, 'step': 3}

    torch.save(ckpt(), tmp_path / 'good.pth')
    state, step = convert_mode.read_torch_checkpoint(str(tmp_path / 'good.pth'))
    assert step == 3 and set(state) == {'all_modules.0.weight', 'all_modules.0.bias'}
    cases = {
        'index_not_int': ckpt({'module.all_modules.x.weight': w}, [w]),
        'too_short': ckpt({'module.all_modules.0': w}, [w]),
        'empty_part': ckpt({'module.all_modules.0..weight': w}, [w]),
        'list_entry': ckpt({'module.all_modules.0.weight': [1.0, 2.0]}, [w]),
        'str_entry': ckpt({'module.all_modules.0.weight': 'weights'}, [w]),
        'dict_entry': ckpt({'module.all_modules.0.weight': {'a': w}}, [w]),
        'complex_entry': ckpt({'module.all_modules.0.weight': w.to(torch.complex64)}, [w]),
        'shadow_str': ckpt(shadow=['x', torch.zeros(4)]),
        'shadow_none': ckpt(shadow=[w, None]),
    }
    for name, value in cases.items():
        path = tmp_path / f'{name}.pth'
        torch.save(value, path)
        with pytest.raises(ConfigError) as err:
            convert_mode.read_torch_checkpoint(str(path))
        msg = str(err.value)
        assert msg.startswith("invalid --source='") and '\n' not in msg, (name, msg)
    leaf = np.zeros((3, 3), np.float32)
    for name, params in {'str_leaf': {'Conv_0': {'kernel': 'text'}},
                         'int_leaf': {'Conv_0': {'kernel': 3}},
                         'list_leaf': {'Conv_0': {'kernel': [1.0, 2.0]}},
                         'bool_leaf': {'Conv_0': {'kernel': True}},
                         'str_array_leaf': {'Conv_0': {'kernel': np.array(['a'])}},
                         'none_leaf': {'Conv_0': {'kernel': None, 'bias': leaf}}}.items():
        path = tmp_path / f'{name}.msgpack'
        path.write_bytes(serialization.msgpack_serialize({'step': 1, 'params_ema': params}))
        with pytest.raises(ConfigError) as err:
            convert_mode.read_flax_checkpoint(str(path))
        msg = str(err.value)
        assert msg.startswith("invalid --source='") and '\n' not in msg, (name, msg)


# ------------------------------------------------------------------------------ write_bytes


def test_write_bytes_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
            os.umask(mask)
            path = tmp_path / f'out_{mask:o}.bin'
            outputs.write_bytes(str(path), b'data')
            assert path.read_bytes() == b'data'
            assert os.stat(path).st_mode & 0o777 == mode, (oct(mask), oct(os.stat(path).st_mode))
    finally:
        os.umask(old)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.tmp-')]


# ------------------------------------------------------------------------------ main.py


def run_main(workdir, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, os.path.join(ROOT, 'main.py'),
           f'--config={os.path.join(ROOT, "configs/analytic/field_16.py")}',
           f'--workdir={workdir}', '--config.eval.num_samples=2', '--config.eval.batch_size=2',
           '--config.sampling.steps=2', *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=jax_env())


def _source_npz(tmp_path) -> str:
    path = tmp_path / 'source.npz'
    np.savez(path, samples=RNG.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8))
    return str(path)


def _ref_2048(tmp_path) -> str:
    path = tmp_path / 'ref.npz'
    np.savez(path, mu=np.zeros(2048), sigma=np.eye(2048), num_images=np.int64(10),
             resize=np.array('bilinear'))
    return str(path)


def _case_mask(tmp_path):
    path = tmp_path / 'mask.npy'
    path.write_bytes(npy_bytes(np.ones((3, 16, 16), np.float32))[:100])
    return [f'--config.sampling.pds.freq_mask={path}'], 'sampling.pds.freq_mask', path


def _case_source_npz(tmp_path):
    path = tmp_path / 'damaged.npz'
    path.write_bytes(npz_bytes(samples=np.zeros((2, 8, 8, 3), np.uint8))[:-20])
    return ['--mode=fid', f'--source={path}'], '--source', path


def _case_data_npz(tmp_path):
    path = tmp_path / 'images.npz'
    path.write_bytes(with_arrays({}, images=np.zeros((2, 16, 16, 3), 'U1')))
    return ['--mode=stats', f'--source={path}'], 'data.path', path


def _case_source_png(tmp_path):
    folder = tmp_path / 'pngs'
    folder.mkdir()
    (folder / 'big.png').write_bytes(patch_ihdr(png_bytes(np.zeros((8, 8, 3), np.uint8)),
                                                20000, 20000))
    return ['--mode=fid', f'--source={folder}'], '--source', folder / 'big.png'


def _case_ref_stats(tmp_path):
    path = tmp_path / 'ref_damaged.npz'
    path.write_bytes(npz_bytes(mu=np.zeros(2048), sigma=np.full((2048, 2048), np.nan)))
    return (['--mode=fid', f'--source={_source_npz(tmp_path)}',
             f'--config.eval.ref_stats={path}'], 'eval.ref_stats', path)


def _case_inception_weights(tmp_path):
    path = tmp_path / 'weights.npz'
    path.write_bytes(b'PK\x03\x04' + RNG.bytes(1000))
    return (['--mode=fid', f'--source={_source_npz(tmp_path)}',
             f'--config.eval.ref_stats={_ref_2048(tmp_path)}',
             f'--config.eval.inception_weights={path}'], 'eval.inception_weights', path)


def _case_convert_pth(tmp_path):
    torch = pytest.importorskip('torch')
    path = tmp_path / 'checkpoint_1.pth'
    torch.save({'model': {'module.all_modules.x.weight': torch.zeros(2)},
                'ema': {'shadow_params': [torch.zeros(2)]}, 'step': 1}, path)
    return ['--mode=convert', f'--source={path}'], '--source', path


@pytest.mark.slow  # main.py subprocesses (3-8 s each): left out of `make test-fast`
@pytest.mark.parametrize('case', [
    _case_mask, _case_source_npz, _case_data_npz, _case_source_png, _case_ref_stats,
    _case_inception_weights, _case_convert_pth,
], ids=lambda f: f.__name__[6:])
def test_main_one_error_line(tmp_path, case):
    args, field, path = case(tmp_path)
    res = run_main(tmp_path / 'work', *args)
    assert res.returncode == 2, res.stderr[-3000:]
    assert 'Traceback' not in res.stderr, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith('error:')]
    assert len(errors) == 1 and errors[0] == lines[-1], res.stderr[-3000:]
    assert errors[0].startswith(f'error: invalid {field}=') and str(path) in errors[0]
