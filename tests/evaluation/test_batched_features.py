"""evaluation.metrics.batched: batches split over the process's devices, results unchanged."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.helpers.paths import ROOT, jax_env

SCRIPT = textwrap.dedent('''
    import jax, jax.numpy as jnp, numpy as np
    from evaluation.metrics import batched, replicate_local

    seen, params_seen = [], []

    @jax.jit
    def apply(w, x):  # a per-row feature: a weighted sum of each image's pixels
        return {'f': jnp.einsum('bhwc,hwc->b', x.astype(jnp.float32), w)[:, None],
                'id': x[:, 0, 0, :1].astype(jnp.float32)}

    def spy(w, x):
        seen.append((x.shape, len(x.sharding.device_set), len(w.sharding.device_set)))
        params_seen.append(w)
        return apply(w, x)

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 4, 4, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(7)
    w = rng.normal(size=(4, 4, 3)).astype(np.float32)
    out = batched(spy, w, images, batch_size=3)
    want = np.einsum('bhwc,hwc->b', images.astype(np.float64), w)[:, None]
    assert out['f'].shape == (7, 1) and np.array_equal(out['id'][:, 0], np.arange(7)), out
    # 48 products of integers < 256 and float32 weights: float32 rounding of the sum
    assert np.allclose(out['f'], want, rtol=0, atol=48 * 2.0**-23 * np.abs(want).max())
    print(seen)
    assert seen == [((4, 4, 4, 3), 4, 4)] * 3, seen  # 3 rows padded to 4, over 4 devices
    # parameters placed beforehand reach apply as they are, without a copy per call
    placed = replicate_local(w)
    params_seen.clear()
    again = batched(spy, placed, images, batch_size=3)
    assert all(p is placed for p in params_seen) and len(params_seen) == 3, params_seen
    assert all(np.array_equal(again[k], out[k]) for k in out)
''')


def test_batches_split_over_every_local_device():
    proc = subprocess.run([sys.executable, '-c', SCRIPT], cwd=ROOT, env=jax_env(devices=4),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
