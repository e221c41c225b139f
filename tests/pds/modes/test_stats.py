"""--mode=stats (pds/modes/stats.py): masks in the reference format equal to a direct numpy
computation, the power spectrum, FID reference statistics, outputs and errors; and
sampling.pds.freq_mask='stats' on a real (npz) dataset."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from configs.analytic import cifar10
from pds.experiment import assemble as experiment
from pds.method import masks, pds_preconditioner
from pds.modes import stats as stats_mode
from pds.runtime.errors import ConfigError

SIZE = 8


def make_config(dataset='npz', path='', n=6):
    config = cifar10.get_config()
    config.data.dataset = dataset
    config.data.path = path
    config.data.image_size = SIZE
    config.sampling.pds.num_stat_images = n
    config.eval.inception_weights = '/nonexistent/inception.npz'
    return config


@pytest.fixture
def npz(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (9, SIZE, SIZE, 3), dtype=np.uint8)
    np.savez(tmp_path / 'images.npz', images=arr)
    return str(tmp_path / 'images.npz'), arr


def direct_stats(images):
    """Reference formulas written out: per image and channel, a plain 2-D DFT."""
    n, h, w, c = images.shape
    power = np.zeros((c, h, w))
    square = np.zeros((c, h, w))
    for x in images.astype(np.float64):
        for k in range(c):
            power[k] += np.abs(np.fft.fft2(x[:, :, k])) ** 2
            square[k] += x[:, :, k] ** 2
    return np.log(1.0 + power / n), square / n, power / n / (h * w)


def test_masks_equal_direct_numpy(npz, tmp_path):
    path, arr = npz
    workdir = tmp_path / 'w'
    summary = stats_mode.run(make_config('npz', path, n=6), str(workdir))
    freq_ref, space_ref, power_ref = direct_stats(arr[:6] / 255.0)
    freq = np.load(workdir / 'stats' / 'freq_mask.npy')
    space = np.load(workdir / 'stats' / 'space_mask.npy')
    assert freq.dtype == space.dtype == np.float32
    assert freq.shape == space.shape == (3, SIZE, SIZE)
    np.testing.assert_allclose(freq, freq_ref, rtol=1e-6)
    np.testing.assert_allclose(space, space_ref, rtol=1e-6)
    # the reference loader accepts them
    masks.load_mask(str(workdir / 'stats' / 'freq_mask.npy'), 'f', (3, SIZE, SIZE))

    spec = np.load(workdir / 'stats' / 'spectrum.npz')
    x = arr[:6] / 255.0
    mean = x.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(spec['mean'], mean, rtol=1e-6)
    np.testing.assert_allclose(spec['power'], power_ref, rtol=1e-5)
    _, _, centered_ref = direct_stats(x - mean + 0.0)
    np.testing.assert_allclose(spec['power_centered'], centered_ref, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(spec['variance'], x.var(axis=(0, 1, 2)), rtol=1e-5)
    assert int(spec['num_images']) == 6

    assert not (workdir / 'stats' / 'fid_stats.npz').exists()
    saved = json.loads((workdir / 'stats' / 'summary.json').read_text())
    assert saved == summary and saved['num_images'] == 6 and 'skipped' in saved['fid']


def test_refuses_to_overwrite(npz, tmp_path):
    path, _ = npz
    config = make_config('npz', path)
    stats_mode.run(config, str(tmp_path))
    with pytest.raises(ConfigError, match='--overwrite'):
        stats_mode.run(config, str(tmp_path))
    stats_mode.run(config, str(tmp_path), overwrite=True)


def test_source_folder_overrides_dataset(tmp_path):
    rng = np.random.default_rng(3)
    os.makedirs(tmp_path / 'imgs')
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)).save(
            tmp_path / 'imgs' / f'{i}.png')
    config = make_config('gaussian_field', n=200)
    summary = stats_mode.run(config, str(tmp_path / 'w'), source=str(tmp_path / 'imgs'))
    assert summary['dataset'] == 'folder' and summary['num_images'] == 4
    assert np.load(tmp_path / 'w' / 'stats' / 'freq_mask.npy').shape == (3, SIZE, SIZE)
    with pytest.raises(ConfigError, match='--source'):
        stats_mode.run(config, str(tmp_path / 'w2'), source=str(tmp_path / 'none'))


def test_gaussian_field_spectrum_fits_the_field(tmp_path):
    from pds.analytic.gaussian_field import field_from_config

    config = make_config('gaussian_field', n=400)
    stats_mode.run(config, str(tmp_path))
    spec = np.load(tmp_path / 'stats' / 'spectrum.npz')
    lam = np.moveaxis(field_from_config(config).spectrum(SIZE, SIZE), 2, 0)
    np.testing.assert_allclose(spec['mean'], config.model.field_mean, atol=0.03)
    np.testing.assert_allclose(spec['variance'], config.model.field_variance, rtol=0.2)
    # 400 samples: each eigenvalue estimate has relative std ~ 1/sqrt(400) (up to sqrt 2)
    ratio = spec['power_centered'][:, 1:, 1:] / lam[:, 1:, 1:]
    assert abs(np.median(ratio) - 1) < 0.1


def test_freq_mask_stats_with_a_dataset(npz):
    path, arr = npz
    config = make_config('npz', path, n=5)
    config.model.name = 'ncsnpp'  # not an exact-score model: statistics come from the data
    config.sampling.pds.freq_mask = 'stats'
    config.sampling.pds.space_mask = 'stats'
    gain_f, gain_s = pds_preconditioner.pds_gains(config, experiment.image_shape(config),
                                                  lambda n: experiment.stats_images(config, n))
    x = arr[:5] / 255.0
    freq_ref, space_ref, _ = direct_stats(x)
    np.testing.assert_allclose(gain_f, masks.frequency_gain(freq_ref, 5.0), rtol=1e-5)
    np.testing.assert_allclose(gain_s, masks.space_gain(space_ref, 5.0), rtol=1e-5)


def test_gaussian_field_stats_images_unchanged():
    config = make_config('gaussian_field')
    config.model.name = 'gaussian_field'
    from pds.analytic.gaussian_field import field_from_config

    ref = field_from_config(config).sample(np.random.default_rng(config.seed + 7919), 3, SIZE,
                                           SIZE)
    np.testing.assert_array_equal(experiment.stats_images(config, 3), ref)


def test_errors(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ConfigError, match='holds none'):
        stats_mode.run(make_config('folder', str(tmp_path / 'empty')), str(tmp_path / 'w'))
    with pytest.raises(ConfigError, match='num_stat_images'):
        stats_mode.run(make_config('gaussian_field', n=0), str(tmp_path / 'w'))
    assert not (tmp_path / 'w' / 'stats' / 'summary.json').exists()


def random_inception_weights(path):
    from evaluation import inception
    from evaluation.inception_weights import save_params

    rng = np.random.default_rng(0)
    flat = {}
    for key, shape in inception.param_shapes().items():
        leaf = key.rsplit('/', 1)[1]
        if leaf == 'kernel':
            flat[key] = rng.normal(size=shape) * (2.0 / np.prod(shape[:-1])) ** 0.5
        elif leaf in ('scale', 'var'):
            flat[key] = np.ones(shape)
        else:
            flat[key] = np.zeros(shape)
    save_params(flat, path)


@pytest.mark.slow
def test_fid_reference_statistics(npz, tmp_path):
    import jax

    from evaluation import metrics
    from pds.quality import inception as features

    path, arr = npz
    weights = str(tmp_path / 'inception.npz')
    random_inception_weights(weights)
    config = make_config('npz', path, n=3)
    config.eval.inception_weights = weights
    config.eval.inception_batch_size = 3
    stats_mode.run(config, str(tmp_path / 'w'))
    stats_path = tmp_path / 'w' / 'stats' / 'fid_stats.npz'
    loaded = metrics.load_stats(stats_path)
    params, _ = features.inception_params(config)
    # placed on every local device once, so that each features() call reuses them
    assert all(isinstance(leaf, jax.Array) and leaf.sharding.is_fully_replicated
               and leaf.sharding.device_set == set(jax.local_devices())
               for leaf in jax.tree_util.tree_leaves(params))
    feats = metrics.features(params, arr[:3], batch_size=3, with_logits=False)['pool_3']
    np.testing.assert_allclose(loaded.mu, feats.mean(0), rtol=1e-4, atol=1e-5)
    assert loaded.num_images == 3 and loaded.sigma.shape == (2048, 2048)
    assert features.load_reference(str(stats_path)).features.shape == (3, 2048)
