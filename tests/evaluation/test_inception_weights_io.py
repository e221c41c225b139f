"""Weight conversion and checked loading (no torch needed except where marked)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from evaluation import inception
from evaluation import inception_weights as iw


def _random_flat(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s).astype(np.float32) for k, s in inception.param_shapes().items()}


def test_missing_file_message(tmp_path):
    path = tmp_path / 'nope' / 'inception_fid.npz'
    with pytest.raises(FileNotFoundError) as info:
        iw.load_inception_params(path)
    msg = str(info.value)
    assert '\n' not in msg
    assert str(path) in msg and iw.SOURCE_NAME in msg
    assert (f'python -m evaluation.inception_weights --source {iw.SOURCE_NAME} --out {path}'
            in msg)


def test_roundtrip_and_checksum(tmp_path):
    flat = _random_flat()
    path = tmp_path / 'w.npz'
    digest = iw.save_params(flat, path)
    params = iw.load_inception_params(path, expected_sha256=digest)
    np.testing.assert_array_equal(params['Mixed_6b']['branch7x7_2']['kernel'],
                                  flat['Mixed_6b/branch7x7_2/kernel'])
    with pytest.raises(ValueError, match='differs from the expected'):
        iw.load_inception_params(path, expected_sha256='0' * 64)


def test_corrupt_file_detected(tmp_path):
    flat = _random_flat()
    path = tmp_path / 'w.npz'
    digest = iw.save_params(flat, path)
    flat['fc/bias'][3] += 1.0
    np.savez(path, **flat, **{iw.DIGEST_KEY: np.array(digest)})
    with pytest.raises(ValueError, match='checksum mismatch'):
        iw.load_inception_params(path)


def test_key_mismatch_detected(tmp_path):
    flat = _random_flat()
    flat['Mixed_5b/extra/kernel'] = flat.pop('Mixed_5b/branch1x1/kernel')
    path = tmp_path / 'w.npz'
    np.savez(path, **flat, **{iw.DIGEST_KEY: np.array(iw.params_digest(flat))})
    with pytest.raises(ValueError, match=r'missing.*Mixed_5b/branch1x1/kernel'):
        iw.load_inception_params(path)


def test_state_dict_renaming():
    rng = np.random.default_rng(0)
    sd = {'Mixed_6b.branch7x7_2.conv.weight': rng.normal(size=(5, 4, 1, 7)),
          'Mixed_6b.branch7x7_2.bn.running_var': rng.uniform(size=5),
          'Mixed_6b.branch7x7_2.bn.num_batches_tracked': np.array(0),
          'fc.weight': rng.normal(size=(3, 2))}
    flat = iw.state_dict_to_flat(sd)
    assert set(flat) == {'Mixed_6b/branch7x7_2/kernel', 'Mixed_6b/branch7x7_2/var', 'fc/kernel'}
    k = flat['Mixed_6b/branch7x7_2/kernel']
    assert k.shape == (1, 7, 4, 5)
    assert k[0, 6, 2, 1] == np.float32(sd['Mixed_6b.branch7x7_2.conv.weight'][1, 2, 0, 6])
    np.testing.assert_array_equal(flat['fc/kernel'], sd['fc.weight'].T.astype(np.float32))
    with pytest.raises(ValueError, match='unexpected keys'):
        iw.state_dict_to_flat({'AuxLogits.fc.weight': np.zeros((2, 2))})


def test_missing_torch_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'torch', None)  # makes `import torch` raise ImportError
    with pytest.raises(ImportError, match=r'requirements-test\.txt'):
        iw.load_torch_state_dict(tmp_path / 'x.pth')


def test_source_hash_in_name_checked(tmp_path):
    bad = tmp_path / 'pt_inception-2015-12-05-6726825d.pth'
    bad.write_bytes(b'not the weights')
    with pytest.raises(ValueError, match='does not start with the hash 6726825d'):
        iw.convert(bad, tmp_path / 'out.npz')
