"""The golden test: the outputs of a fixed set of runs (tests/helpers/golden_cases.py) must not
change.

On the platform that recorded them (same jax build, XLA flags, core count and vector
extensions: ``fingerprint``) every array must be bit-identical. Elsewhere XLA may fuse and
vectorise differently, so floats are compared to float32 rounding propagated through the
run (``_close``; trained parameters through their norms, ``_close_trained``), the uint8
images to within one level, and the metrics files through their fields (``_compare``).
"""

import json
import os
import re

import numpy as np
import pytest

from tests.helpers.golden_cases import groups, run_group

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


JSON_BLOBS = ('metrics', 'train_metrics')  # JSON text as uint8
IMAGE_BLOBS = ('grid_png',)  # PNG file bytes
# Trained parameters whose gradient is zero in exact arithmetic, so that their values are
# rounding noise: an attention key's bias adds q.b to every logit of a query, which the
# softmax ignores. They must stay at rounding level (well under the ~1e-6 that four Adam steps
# move the EMA of any other zero-initialised parameter).
ZERO_GRADIENT = re.compile(r'AttnBlockpp_\d+/NIN_1/b$')
ROUNDING_LEVEL = 1e-9


def _close_trained(key: str, a: np.ndarray, b: np.ndarray) -> bool:
    """Trained (EMA) parameters: Adam's update m / (sqrt(v) + eps) of an element whose
    gradient is near zero turns float32 rounding of the gradient into an O(1) relative change
    of that element, so elements are not compared one by one; the array's L2 norm is, to
    1e-4 relative (as ``_close``)."""
    if ZERO_GRADIENT.search(key):
        return max(np.abs(a).max(), np.abs(b).max()) <= ROUNDING_LEVEL
    diff = np.linalg.norm(a.astype(np.float64) - b)
    return bool(diff <= 1e-4 * max(float(np.linalg.norm(b.astype(np.float64))), 1e-30))


def _skeleton(obj):
    """A parsed JSON value with every float replaced by its type: the keys, strings, ints and
    booleans that must match on any platform."""
    if isinstance(obj, dict):
        return {k: _skeleton(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_skeleton(v) for v in obj]
    return 'float' if isinstance(obj, float) else obj


def _compare(key: str, a: np.ndarray, b: np.ndarray, same_platform: bool) -> str | None:
    """Why ``a`` (new) does not match ``b`` (golden), or None.

    On another platform the files made of the arrays (a PNG, the metrics JSON) may differ in
    length (a float printed with one digit fewer): the PNG is compared through its arrays,
    the JSON through its skeleton (``_skeleton``), its floats through the arrays they are
    computed from."""
    blob = key.split('|')[-1]
    if not same_platform and blob in IMAGE_BLOBS:
        return None
    if not same_platform and blob in JSON_BLOBS:
        same = _skeleton(json.loads(bytes(a))) == _skeleton(json.loads(bytes(b)))
        return None if same else f'{key}: fields or non-float values differ'
    if a.shape != b.shape or a.dtype != b.dtype:
        return f'{key}: {a.dtype}{a.shape} != {b.dtype}{b.shape}'
    if same_platform and not np.array_equal(a, b):
        diff = np.abs(a.astype(np.float64) - b).max() if a.dtype.kind in 'fiu' else 'bytes'
        return f'{key}: differs (max |diff| {diff})'
    if not same_platform and '|params/' in key and not _close_trained(key, a, b):
        return f'{key}: beyond float32 rounding (L2)'
    if not same_platform and '|params/' not in key and not _close(a, b):
        return f'{key}: beyond float32 rounding'
    return None


@pytest.mark.parametrize('group', range(len(groups())))
def test_golden_outputs_unchanged(group, tmp_path):
    out = str(tmp_path / 'out.npz')
    res = run_group(out, group)
    assert res.returncode == 0, res.stderr[-4000:]
    with np.load(GOLDEN) as golden, np.load(out) as new:
        same_platform = bytes(golden['fingerprint']) == bytes(new['fingerprint'])
        names = [k for k in golden.files if k.split('|')[0] in groups()[group]]
        assert names and set(names) == {k for k in new.files if k != 'fingerprint'}
        bad = [m for k in names for m in [_compare(k, new[k], golden[k], same_platform)] if m]
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


def test_compare_reads_json_and_png_blobs_by_content_across_platforms():
    def blob(obj):
        return np.frombuffer(json.dumps(obj, sort_keys=True).encode(), np.uint8)

    golden = blob({'fd': 10.641630061242074, 'nfe': 10, 'sampler': {'sde': 'VESDE'}})
    shorter = blob({'fd': 10.64163006124207, 'nfe': 10, 'sampler': {'sde': 'VESDE'}})
    assert _compare('c|metrics', shorter, golden, same_platform=False) is None
    assert _compare('c|metrics', shorter, golden, same_platform=True)  # bit-identity there
    for changed in ({'fd': 10.6, 'nfe': 11, 'sampler': {'sde': 'VESDE'}},
                    {'fd': 10.6, 'nfe': 10, 'sampler': {'sde': 'VPSDE'}},
                    {'frechet': 10.6, 'nfe': 10, 'sampler': {'sde': 'VESDE'}}):
        assert _compare('c|metrics', blob(changed), golden, same_platform=False)
    png = np.arange(5, dtype=np.uint8)
    assert _compare('c|grid_png', png[:4], png, same_platform=False) is None
    x = np.linspace(-1, 1, 7, dtype=np.float32)
    assert _compare('c|raw', x * (1 + 1e-6), x, same_platform=False) is None
    assert _compare('c|raw', x + 1e-3, x, same_platform=False)
    w = np.linspace(-1e-6, 1e-6, 1000, dtype=np.float32)
    flipped = w.copy()
    flipped[500] += 6e-10  # one near-zero-gradient element moved by Adam (as seen: 2.6e-4 of
    # the array's max), the rest to float32 rounding
    assert _compare('t|params/params/Conv_0/kernel', flipped, w, same_platform=False) is None
    assert _compare('t|params/params/Conv_0/kernel', w * 1.01, w, same_platform=False)
    key = 't|params/params/AttnBlockpp_0/NIN_1/b'
    assert _compare(key, np.full(4, 5e-13, np.float32), np.zeros(4, np.float32), False) is None
    assert _compare(key, np.full(4, 1e-6, np.float32), np.zeros(4, np.float32), False)
