"""The golden test: the outputs of a fixed set of runs (tests/golden/cases.py) must not change.

On the platform that recorded them (same jax build, XLA flags, core count and vector
extensions: ``fingerprint``) every array must be bit-identical. Elsewhere XLA may fuse and
vectorise differently, so floats are compared to float32 rounding propagated through the
run (see ``_close``) and the uint8 images to within one level.
"""

import json
import os

import numpy as np
import pytest

from tests.golden.cases import groups, run_group

pytestmark = pytest.mark.slow  # left out of `make test-fast`

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'golden', 'golden.npz')


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    """float32 rounding: a relative 2^-23 per operation, amplified through a few dozen
    sequential steps; 1e-4 of the array's scale bounds it with margin."""
    if a.dtype.kind == 'f':
        scale = max(float(np.max(np.abs(b))), 1e-30)
        return bool(np.all(np.abs(a.astype(np.float64) - b) <= 1e-4 * scale))
    if a.dtype == np.uint8:
        return bool(np.all(np.abs(a.astype(int) - b.astype(int)) <= 1))
    return np.array_equal(a, b)


@pytest.mark.parametrize('group', range(len(groups())))
def test_golden_outputs_unchanged(group, tmp_path):
    out = str(tmp_path / 'out.npz')
    res = run_group(out, group)
    assert res.returncode == 0, res.stderr[-4000:]
    with np.load(GOLDEN) as golden, np.load(out) as new:
        same_platform = bytes(golden['fingerprint']) == bytes(new['fingerprint'])
        names = [k for k in golden.files if k.split('|')[0] in groups()[group]]
        assert names and set(names) == {k for k in new.files if k != 'fingerprint'}
        bad = []
        for k in names:
            a, b = new[k], golden[k]
            if a.shape != b.shape or a.dtype != b.dtype:
                bad.append(f'{k}: {a.dtype}{a.shape} != {b.dtype}{b.shape}')
            elif same_platform and not np.array_equal(a, b):
                diff = (np.abs(a.astype(np.float64) - b).max() if a.dtype.kind in 'fiu'
                        else 'bytes')
                bad.append(f'{k}: differs (max |diff| {diff})')
            elif not same_platform and k.endswith(('grid_png', 'metrics', 'train_metrics')):
                continue  # compared through the arrays they are made of
            elif not same_platform and not _close(a, b):
                bad.append(f'{k}: beyond float32 rounding')
        assert not bad, '\n'.join(bad[:20])


def test_golden_file_covers_every_predictor_corrector_pair_on_ve_and_vp():
    with np.load(GOLDEN) as golden:
        names = {k.split('|')[0] for k in golden.files if '|' in k}
        for sde in ('ve', 'vp'):
            for masks in ('none', 'freq_space'):
                pairs = {n.split('/')[3:5] and tuple(n.split('/')[3:5]) for n in names
                         if n.startswith(f'sample/{sde}/{masks}/')}
                assert len(pairs) == 12, (sde, masks, pairs)
        metrics = json.loads(bytes(golden['sample/ve/freq_space/reverse_diffusion/langevin'
                                          '|metrics']))
        assert metrics['sampler']['precondition'] == 'pds'
        assert metrics['sampler']['pds']['space_mask'] == 'stats'
