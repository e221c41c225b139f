"""The committed photo network (weights/photos_16, docs/photos.md): every file as its
SHA256SUMS lists it, restorable into the network of configs/photo/photos_16.py, its loss curve
complete, and a score that denoises held-out patches far better than the best score that knows
only the data's mean."""

import hashlib
import json
import os

import numpy as np
import pytest

from tests.helpers.paths import ROOT

EXPORT = os.path.join(ROOT, 'weights', 'photos_16')


def listed() -> dict[str, str]:
    with open(os.path.join(EXPORT, 'SHA256SUMS')) as f:
        return {name[2:]: digest for digest, name in (line.split() for line in f)}


def test_every_file_matches_its_checksum_and_none_is_unlisted():
    sums = listed()
    found = {os.path.relpath(os.path.join(d, f), EXPORT) for d, _, files in os.walk(EXPORT)
             for f in files} - {'SHA256SUMS'}
    assert found == set(sums)
    for name, digest in sums.items():
        with open(os.path.join(EXPORT, name), 'rb') as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, name
    size = sum(os.path.getsize(os.path.join(EXPORT, n)) for n in sums)
    assert size < 10 * 2**20


def test_the_loss_curve_covers_every_logged_step():
    from configs.photo.photos_16 import get_config

    t = get_config().training
    with open(os.path.join(EXPORT, 'train_metrics.jsonl')) as f:
        logged = [json.loads(line) for line in f]
    losses = [r for r in logged if 'loss' in r and 'eval_loss' not in r]
    assert [r['step'] for r in losses] == list(range(t.log_freq, t.n_iters + 1, t.log_freq))
    assert all(np.isfinite(r['loss']) for r in losses)


@pytest.mark.slow
def test_the_network_restores_and_denoises_held_out_patches():
    """At sigma = 0.5 the denoiser x + sigma^2 s(x) of held-out patches is compared with the
    best denoiser that knows only the data's per-pixel mean m and variance v (the linear
    shrinkage m + v / (v + sigma^2) (x - m)): the network must halve its error."""
    import jax
    import jax.numpy as jnp

    from configs.photo.photos_16_bench import get_config
    from pds.experiment.network import network_score_model
    from pds.method.sde import VESDE
    from pds.quality.data_reference import reference_sets

    config = get_config()
    builder, variables, provenance = network_score_model(config, os.path.join(ROOT, 'runs'))
    assert provenance['step'] == 12000
    sde = VESDE(config.model.sigma_min, config.model.sigma_max, config.model.num_scales)
    score = jax.jit(builder(sde, variables))
    clean, _ = reference_sets(config, 64)
    sigma = 0.5
    noisy = clean + sigma * np.random.default_rng(0).standard_normal(clean.shape)
    t = (np.log(sigma / sde.sigma_min) / np.log(sde.sigma_max / sde.sigma_min))
    s = np.asarray(score(jnp.asarray(noisy, jnp.float32), jnp.full((64,), t, jnp.float32)))
    network = np.mean((noisy + sigma**2 * s - clean) ** 2)
    m, v = clean.mean(), clean.var()
    shrink = np.mean((m + v / (v + sigma**2) * (noisy - m) - clean) ** 2)
    assert network < 0.5 * shrink, (network, shrink)
