"""Output archives: what np.load reads back, and which members are compressed."""

import io
import zipfile

import numpy as np

from pds.storage.outputs import npz_bytes, write_npz


def test_npz_round_trips_every_dtype_and_stores_only_floats_uncompressed(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {'samples': rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8),
              'index': np.arange(6, dtype=np.int64), 'flag': np.array(True),
              'raw': rng.normal(size=(6, 8, 8, 3)).astype(np.float32),
              'sigma': rng.normal(size=(16, 16)), 'empty': np.zeros((0, 3), np.float32),
              'name': np.array('fid')}
    path = str(tmp_path / 'a.npz')
    write_npz(path, **arrays)
    with np.load(path) as d:
        assert sorted(d.files) == sorted(arrays)
        for k, v in arrays.items():
            assert d[k].dtype == v.dtype and d[k].shape == v.shape, k
            np.testing.assert_array_equal(d[k], v, err_msg=k)
    with zipfile.ZipFile(path) as z:
        kinds = {i.filename[:-4]: i.compress_type for i in z.infolist()}
    assert kinds == {'samples': zipfile.ZIP_DEFLATED, 'index': zipfile.ZIP_DEFLATED,
                     'flag': zipfile.ZIP_DEFLATED, 'name': zipfile.ZIP_DEFLATED,
                     'raw': zipfile.ZIP_STORED, 'sigma': zipfile.ZIP_STORED,
                     'empty': zipfile.ZIP_STORED}
    # the same arrays give the same bytes (fixed member times): reruns are comparable files
    assert npz_bytes(**arrays) == (tmp_path / 'a.npz').read_bytes()
    # np.savez's own reader view: the archive holds exactly one .npy member per array
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with zipfile.ZipFile(buf) as ref, zipfile.ZipFile(path) as ours:
        assert sorted(ref.namelist()) == sorted(ours.namelist())
