"""``sampling.progress_every=-1``: no iteration bar, and so no host callback in the compiled
sampler, which JAX's persistent compilation cache then stores (it never stores a program with
a callback); the samples are bit-identical to those of a run with the bar."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.helpers.paths import ROOT, jax_env

SCRIPT = textwrap.dedent('''
    import glob, os, sys
    import jax, numpy as np

    cache = sys.argv[1]
    jax.config.update('jax_compilation_cache_dir', cache)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    from configs.analytic.field_16 import get_config
    from pds.modes import sample

    raw = {}
    for every in (0, -1):
        config = get_config()
        config.update_from_flattened_dict({
            'data.image_size': 8, 'eval.num_samples': 4, 'eval.batch_size': 4,
            'sampling.steps': 3, 'sampling.pds.num_stat_images': 8,
            'sampling.save_raw': True, 'sampling.progress_every': every})
        before = set(os.listdir(cache)) if os.path.isdir(cache) else set()
        work = os.path.join(cache, '..', f'work{every}')
        sample.run(config, work)
        new = sorted(f.split('-')[0] for f in set(os.listdir(cache)) - before)
        print(every, new)
        assert ('jit_body' in new) == (every < 0), (every, new)  # the sampler's program
        raw[every] = np.load(glob.glob(os.path.join(work, 'samples', '*.npz'))[0])['raw']
    assert np.array_equal(raw[0], raw[-1])
    print('ok')
''')


def test_sampler_without_progress_is_cached_and_samples_alike(tmp_path):
    proc = subprocess.run([sys.executable, '-c', SCRIPT, str(tmp_path / 'cache')], cwd=ROOT,
                          env=jax_env(devices=1), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and 'ok' in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]
