"""Photograph patches (pds/data/photos.py): licences listed, box-mean downscaling, the gap
between training and reference windows (checked window by window), the parts' disjointness,
per-image weighting, determinism through the pipeline, flips, the region split, and
--mode=stats on the photo configs."""

import os

import numpy as np
import pytest

from configs.photo import photos_16
from pds.data import photos, pipelines
from pds.modes import stats as stats_mode
from pds.runtime.errors import ConfigError
from tests.helpers.paths import ROOT

ONE = {'process_index': 0, 'process_count': 1}
SMALL = ('chelsea', 'coffee')


def small_config(size=8, downscale=4, **fields):
    config = photos_16.get_config()
    config.data.image_size = size
    config.data.photos = SMALL
    config.data.photo_downscale = downscale
    config.data.photo_gap = 2
    config.training.batch_size = 4
    for key, value in fields.items():
        config.data[key] = value
    return config


def test_every_photo_has_a_licence_in_code_and_docs():
    from skimage import data as skdata

    assert set(photos.LICENCES) == set(photos.PHOTOS)
    with open(os.path.join(ROOT, 'docs', 'photos.md')) as f:
        doc = f.read()
    for name in photos.PHOTOS:
        assert name in doc and name in photos.__doc__
        text = getattr(skdata, name).__doc__.lower()
        assert 'public domain' in text or 'cc0' in text or 'no known copyright' in text


def test_downscale_is_a_box_mean():
    from skimage import data as skdata

    raw = skdata.chelsea().astype(np.float64) / 255.0
    small = photos.load_photo('chelsea', 3)
    assert small.shape == (100, 150, 3)
    for y, x in ((0, 0), (57, 101), (99, 149)):
        block = raw[3 * y: 3 * y + 3, 3 * x: 3 * x + 3]
        np.testing.assert_allclose(small[y, x], block.mean(axis=(0, 1)), rtol=1e-6)


def brute_force_positions(labels, patch, gap, part):
    """Every window tested one by one: the module's rule written directly."""
    h, w = labels.shape
    out = []
    for y in range(h - patch + 1):
        for x in range(w - patch + 1):
            if part == 'train':
                near = labels[max(0, y - gap): y + patch + gap, max(0, x - gap): x + patch + gap]
                ok = not near.any()
            else:
                ok = (labels[y:y + patch, x:x + patch] == {'eval': 1, 'eval_b': 2}[part]).all()
            if ok:
                out.append(y * w + x)
    return np.array(out, np.int64)


@pytest.mark.parametrize('holdout', photos.HOLDOUTS)
def test_positions_match_a_window_by_window_check(holdout):
    labels = photos.holdout_labels(45, 70, 6, holdout)
    assert (labels == 1).any() and (labels == 2).any() and (labels == 0).any()
    for part in photos.PARTS:
        np.testing.assert_array_equal(photos.valid_positions(labels, 6, 2, part),
                                      brute_force_positions(labels, 6, 2, part))


def covered(positions, shape, patch):
    mask = np.zeros(shape, bool)
    for flat in positions:
        y, x = divmod(int(flat), shape[1])
        mask[y:y + patch, x:x + patch] = True
    return mask


@pytest.mark.parametrize('holdout', photos.HOLDOUTS)
def test_training_patches_keep_the_gap_from_every_reference_patch(holdout):
    from scipy.ndimage import distance_transform_cdt

    patch, gap = 8, 3
    image = photos.load_photo('chelsea', 4)
    labels = photos.holdout_labels(*image.shape[:2], patch, holdout)
    cover = {part: covered(photos.valid_positions(labels, patch, gap, part), labels.shape, patch)
             for part in photos.PARTS}
    for part in ('eval', 'eval_b'):
        assert cover[part].any() and not (cover[part] & cover['train']).any()
        # Chebyshev distance from every training pixel to the nearest reference pixel
        dist = distance_transform_cdt(~cover[part], metric='chessboard')
        assert dist[cover['train']].min() > gap
    assert not (cover['eval'] & cover['eval_b']).any()
    if holdout == 'region':
        start = labels.shape[1] - labels.shape[1] // photos.HOLDOUT_EVERY
        assert not cover['train'][:, start - gap:].any()
        assert not cover['eval'][:, :start].any()


def test_blocks_spread_over_the_whole_photograph():
    labels = photos.holdout_labels(512, 512, 16, 'blocks')
    cell = 24
    held = labels[::cell, ::cell] > 0
    # one cell in 8 in every row of cells and in every column
    assert held.mean() == pytest.approx(1 / 8, abs=0.02)
    assert held.any(axis=0).all() and held.any(axis=1).all()


def test_read_cuts_the_located_window_and_is_deterministic():
    config = small_config()
    src = photos.PhotoSource(config, seed=5, part='train')
    x = src.read([3, 0, 11])
    for row, i in zip(x, (3, 0, 11)):
        k, y, xx = src.locate(i)
        np.testing.assert_array_equal(row, src.images[k][y:y + 8, xx:xx + 8])
    np.testing.assert_array_equal(src.read([11]), x[2:])
    again = photos.PhotoSource(config, seed=5, part='train').read([3, 0, 11])
    np.testing.assert_array_equal(again, x)
    assert not np.array_equal(photos.PhotoSource(config, seed=6, part='train').read([3]), x[:1])
    assert not np.array_equal(photos.PhotoSource(config, seed=5, part='eval').read([3]), x[:1])


@pytest.mark.parametrize('weighting', photos.WEIGHTINGS)
def test_per_image_weighting(weighting):
    config = small_config(photo_weighting=weighting)
    src = photos.PhotoSource(config, seed=0, part='train')
    n = 4000
    counts = np.bincount([src.locate(i)[0] for i in range(n)], minlength=2)
    sizes = np.array([len(p) for p in src.positions], np.float64)
    expected = np.full(2, 0.5) if weighting == 'equal' else sizes / sizes.sum()
    assert abs(sizes[1] / sizes.sum() - 0.5) > 0.05  # the two weightings differ here
    # binomial counts: 4 standard deviations
    sd = np.sqrt(n * expected * (1 - expected))
    assert np.all(np.abs(counts - n * expected) < 4 * sd)


def test_positions_are_uniform_within_a_photograph():
    config = small_config(photos=('chelsea',))
    src = photos.PhotoSource(config, seed=0, part='eval')
    pos = src.positions[0]
    hits = np.array([np.searchsorted(pos, src.locate(i)[1] * src.images[0].shape[1]
                                     + src.locate(i)[2]) for i in range(3000)])
    # the rank of the drawn position among the valid ones is uniform: 4 bins, 4 sd
    counts = np.bincount(hits * 4 // len(pos), minlength=4)
    assert np.all(np.abs(counts - 750) < 4 * np.sqrt(3000 * 0.25 * 0.75))


def test_pipeline_batches_flips_resume_and_shards():
    config = small_config()
    batches = pipelines.get_batches(config, batch_size=4, seed=3, **ONE)
    full = [next(batches) for _ in range(5)]
    src = photos.PhotoSource(config, seed=3, part='train')
    raw = src.read(np.arange(20)).reshape(5, 4, 8, 8, 3)
    flipped = 0
    for b in range(5):
        for i in range(4):
            same = np.array_equal(full[b][i], raw[b, i])
            mirror = np.array_equal(full[b][i], raw[b, i, :, ::-1])
            assert same or mirror
            flipped += mirror and not same
    assert 0 < flipped < 20
    resumed = pipelines.get_batches(config, batch_size=4, seed=3, start_batch=3, **ONE)
    np.testing.assert_array_equal(next(resumed), full[3])
    halves = [next(pipelines.get_batches(config, batch_size=4, seed=3, process_index=k,
                                         process_count=2)) for k in range(2)]
    np.testing.assert_array_equal(np.concatenate(halves), full[0])
    ref = pipelines.load_images(config, 6, 'eval')
    np.testing.assert_array_equal(ref, photos.PhotoSource(config, config.seed,
                                                          'eval').read(range(6)))


@pytest.mark.parametrize('field, value', [
    ('photos', ('chelsea', 'cat')), ('photos', ('chelsea', 'chelsea')), ('photos', ()),
    ('photo_downscale', 0), ('photo_holdout', 'random'), ('photo_gap', -1),
    ('photo_weighting', 'pixels'), ('num_channels', 1)])
def test_bad_fields_are_one_line_errors(field, value):
    config = small_config(**{field: value})
    with pytest.raises(ConfigError, match=f'data.{field}='):
        photos.PhotoSource(config, 0, 'train')


def test_too_small_for_the_patch_is_an_error():
    with pytest.raises(ConfigError, match=r'data.photo_downscale=40.*none in chelsea'):
        photos.PhotoSource(small_config(size=8, downscale=40), 0, 'eval')


def test_stats_mode_writes_the_pds_masks(tmp_path):
    config = photos_16.get_config()
    config.data.photos = SMALL
    config.sampling.pds.num_stat_images = 8
    config.eval.inception_weights = '/nonexistent/inception.npz'
    stats_mode.run(config, str(tmp_path))
    freq = np.load(tmp_path / 'stats' / 'freq_mask.npy')
    space = np.load(tmp_path / 'stats' / 'space_mask.npy')
    assert freq.shape == space.shape == (3, 16, 16)
    x = pipelines.load_images(config, 8).astype(np.float64)
    np.testing.assert_allclose(space, np.moveaxis((x ** 2).mean(axis=0), 2, 0), rtol=1e-5)
    power = np.abs(np.fft.fft2(np.moveaxis(x, 3, 1))) ** 2
    np.testing.assert_allclose(freq, np.log1p(power.mean(axis=0)), rtol=1e-5)


def test_main_checks_the_photo_fields_before_writing(tmp_path):
    import subprocess
    import sys

    from pds.experiment import config_checks

    config = small_config(photo_gap=-3)
    with pytest.raises(ConfigError, match=r'data\.photo_gap=-3'):
        config_checks.check_config(config, 'stats')
    workdir = tmp_path / 'run'
    proc = subprocess.run(
        [sys.executable, 'main.py', '--config=configs/photo/photos_16.py', f'--workdir={workdir}',
         '--mode=stats', "--config.data.photos=('astronaut', 'cat')"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env=dict(os.environ, JAX_PLATFORMS='cpu'))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "invalid data.photos=('astronaut', 'cat')" in lines[0]
    assert not workdir.exists()
