"""Input pipelines (pds/data/pipelines.py): npz, folder, Gaussian-field and TFDS sources on tiny
generated data; scaling, flips, dequantization; determinism, resume and process sharding;
one-line errors."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs.analytic import cifar10
from pds.analytic.gaussian_field import field_from_config
from pds.data import pipelines
from pds.runtime.errors import ConfigError
from tests.helpers.paths import ROOT

SIZE = 8
ONE = {'process_index': 0, 'process_count': 1}


def make_config(dataset='npz', path='', **data_fields):
    config = cifar10.get_config()
    config.data.dataset = dataset
    config.data.path = path
    config.data.image_size = SIZE
    config.data.random_flip = False
    config.training.batch_size = 4
    config.eval.batch_size = 4
    for key, value in data_fields.items():
        config.data[key] = value
    return config


def uint8_images(n, h=SIZE, w=SIZE, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


@pytest.fixture
def npz_path(tmp_path):
    path = tmp_path / 'images.npz'
    np.savez(path, images=uint8_images(10))
    return str(path)


def take(it, k):
    return [next(it) for _ in range(k)]


def pil_crop_resize(arr, size):
    """Independent reference: PIL centre crop to the shorter side + bilinear resize, uint8."""
    im = Image.fromarray(arr)
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    im = im.crop((left, top, left + s, top + s)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, np.float32) / 255.0


# ---------------------------------------------------------------------------------- npz


def test_npz_load_images_exact(npz_path):
    raw = np.load(npz_path)['images']
    x = pipelines.load_images(make_config('npz', npz_path), 6)
    assert x.dtype == np.float32 and x.shape == (6, SIZE, SIZE, 3)
    np.testing.assert_array_equal(x, raw[:6] / np.float32(255))


def test_npz_float_and_arr0_and_grey(tmp_path):
    arr = np.random.default_rng(1).random((5, SIZE, SIZE)).astype(np.float32)
    np.savez(tmp_path / 'f.npz', arr)
    x = pipelines.load_images(make_config('npz', str(tmp_path / 'f.npz'), num_channels=1), 5)
    np.testing.assert_array_equal(x, arr[..., None])


def test_train_epoch_is_a_permutation(npz_path):
    raw = np.load(npz_path)['images'] / np.float32(255)
    config = make_config('npz', npz_path)
    batches = take(pipelines.get_batches(config, batch_size=5, **ONE), 4)  # 2 epochs of 10
    for epoch in (batches[:2], batches[2:]):
        got = np.concatenate(epoch).reshape(10, -1)
        order = sorted(range(10), key=lambda i: got[i].tobytes())
        ref = sorted(range(10), key=lambda i: raw[i].reshape(-1).tobytes())
        np.testing.assert_array_equal(got[order], raw.reshape(10, -1)[ref])
    assert not np.array_equal(np.concatenate(batches[:2]), np.concatenate(batches[2:]))


def test_eval_is_one_ordered_pass(npz_path):
    raw = np.load(npz_path)['images'] / np.float32(255)
    batches = list(pipelines.get_batches(make_config('npz', npz_path, random_flip=True), 'eval',
                                    **ONE))
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(batches), raw)


# ------------------------------------------------------------------ scaling, flips, dequant


def test_centering_and_flips(npz_path):
    raw = np.load(npz_path)['images'] / np.float32(255)
    plain = make_config('npz', npz_path)
    cent = make_config('npz', npz_path, centered=True)
    flip = make_config('npz', npz_path, random_flip=True)
    a = take(pipelines.get_batches(plain, **ONE), 3)
    b = take(pipelines.get_batches(cent, **ONE), 3)
    f = take(pipelines.get_batches(flip, **ONE), 3)
    for x, y, z in zip(a, b, f):
        np.testing.assert_allclose(y, 2 * x - 1, atol=1e-6)
        assert y.min() >= -1 and y.max() <= 1
        for xi, zi in zip(x, z):  # each example as is or mirrored left-right
            assert np.array_equal(zi, xi) or np.array_equal(zi, xi[:, ::-1])
    mirrored = sum(not np.array_equal(zi, xi) for x, z in zip(a, f) for xi, zi in zip(x, z))
    assert 0 < mirrored < 12
    # flips belong to training only
    e = np.concatenate(list(pipelines.get_batches(flip, 'eval', **ONE)))
    np.testing.assert_array_equal(e, raw)


def test_uniform_dequantization(npz_path):
    x = next(pipelines.get_batches(make_config('npz', npz_path), **ONE))
    config = make_config('npz', npz_path, uniform_dequantization=True)
    d = next(pipelines.get_batches(config, **ONE))
    u = d * 256 - x * 255  # (255 x + u) / 256, u ~ U[0, 1)
    assert u.min() >= -1e-4 and u.max() < 1 + 1e-4 and 0.4 < u.mean() < 0.6


# -------------------------------------------------------------- determinism, resume, shards


@pytest.mark.parametrize('dataset', ['npz', 'gaussian_field'])
def test_resume_continues_exactly(npz_path, dataset):
    config = make_config(dataset, npz_path, random_flip=True, uniform_dequantization=True)
    full = take(pipelines.get_batches(config, batch_size=4, seed=3, **ONE), 7)  # crosses epochs
    resumed = take(pipelines.get_batches(config, batch_size=4, seed=3, start_batch=4, **ONE), 3)
    for x, y in zip(full[4:], resumed):
        np.testing.assert_array_equal(x, y)
    other = next(pipelines.get_batches(config, batch_size=4, seed=4, **ONE))
    assert not np.array_equal(other, full[0])


@pytest.mark.parametrize('dataset', ['npz', 'gaussian_field'])
def test_process_shards_cover_the_batch(npz_path, dataset):
    config = make_config(dataset, npz_path, random_flip=True)
    whole = take(pipelines.get_batches(config, batch_size=4, **ONE), 4)
    shards = [take(pipelines.get_batches(config, batch_size=4, process_index=k, process_count=2), 4)
              for k in range(2)]
    for b in range(4):
        assert shards[0][b].shape == shards[1][b].shape == (2, SIZE, SIZE, 3)
        np.testing.assert_array_equal(np.concatenate([shards[0][b], shards[1][b]]), whole[b])
        assert not np.array_equal(shards[0][b], shards[1][b])


def test_process_reads_only_its_examples(npz_path, monkeypatch):
    source = pipelines.NpzSource(npz_path, SIZE, 3)
    read = []
    orig = source.read
    monkeypatch.setattr(source, 'read', lambda idx: read.append(list(idx)) or orig(idx))
    monkeypatch.setattr(pipelines, 'array_source', lambda *a, **k: source)
    config = make_config('npz', npz_path)
    take(pipelines.get_batches(config, batch_size=4, process_index=1, process_count=2), 2)
    ours = [i for r in read for i in r]
    read.clear()
    take(pipelines.get_batches(config, batch_size=4, process_index=0, process_count=2), 2)
    theirs = [i for r in read for i in r]
    assert len(ours) == len(theirs) == 4 and not set(ours) & set(theirs)


def test_jax_process_layout_default(npz_path):
    config = make_config('npz', npz_path)
    np.testing.assert_array_equal(next(pipelines.get_batches(config)),
                                  next(pipelines.get_batches(config, **ONE)))


# ------------------------------------------------------------------------------ folder


def write_pngs(folder, arrays):
    os.makedirs(folder, exist_ok=True)
    for i, arr in enumerate(arrays):
        Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(
            os.path.join(folder, f'img_{i:02d}.png'))


def test_folder_crop_resize_matches_pil(tmp_path):
    rng = np.random.default_rng(5)
    arrays = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
              for h, w in ((SIZE, SIZE), (20, 13), (13, 31), (32, 32), (9, 8))]
    write_pngs(tmp_path / 'imgs', arrays)
    config = make_config('folder', str(tmp_path / 'imgs'))
    x = pipelines.load_images(config, 5)
    assert x.shape == (5, SIZE, SIZE, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], arrays[0] / np.float32(255))
    for got, arr in zip(x[1:], arrays[1:]):  # PIL resizes uint8, we resize in float
        np.testing.assert_allclose(got, pil_crop_resize(arr, SIZE), atol=1.01 / 255)
    batch = next(pipelines.get_batches(config, batch_size=5, **ONE))
    assert batch.shape == (5, SIZE, SIZE, 3)


def test_folder_grey(tmp_path):
    arrays = [uint8_images(1, 12, 10, 1, seed=s)[0] for s in range(3)]
    write_pngs(tmp_path / 'g', arrays)
    x = pipelines.load_images(make_config('folder', str(tmp_path / 'g'), num_channels=1), 3)
    assert x.shape == (3, SIZE, SIZE, 1)


def test_npz_of_other_size_is_cropped_and_resized(tmp_path):
    arr = uint8_images(3, 12, 16)
    np.savez(tmp_path / 'big.npz', images=arr)
    x = pipelines.load_images(make_config('npz', str(tmp_path / 'big.npz')), 3)
    for got, a in zip(x, arr):
        np.testing.assert_allclose(got, pil_crop_resize(a, SIZE), atol=1.01 / 255)


# ---------------------------------------------------------------------- gaussian field


def test_gaussian_field_exact_samples():
    config = make_config('gaussian_field')
    field = field_from_config(config)
    x = pipelines.load_images(config, 3)
    for i in range(3):
        ref = field.sample(np.random.default_rng([config.seed, 2, 0, i]), 1, SIZE, SIZE)[0]
        np.testing.assert_allclose(x[i], ref, atol=1e-6)
    centered = make_config('gaussian_field', centered=True)
    np.testing.assert_allclose(pipelines.load_images(centered, 3), x, atol=1e-5)  # [0, 1] space
    b = next(pipelines.get_batches(centered, **ONE))
    np.testing.assert_allclose(b, 2 * pipelines.load_images(centered, 4) - 1, atol=1e-5)
    ev = list(pipelines.get_batches(config, 'eval', batch_size=4, **ONE))
    assert sum(len(e) for e in ev) == config.eval.num_samples
    assert not np.allclose(ev[0][:3], x)


def test_gaussian_field_moments():
    config = make_config('gaussian_field')
    x = pipelines.load_images(config, 400).astype(np.float64)
    np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), config.model.field_mean, atol=0.03)
    np.testing.assert_allclose(x.var(axis=(0, 1, 2)), config.model.field_variance, rtol=0.25)


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize('dataset,path,field,allowed', [
    ('npz', '/nonexistent/x.npz', 'data.path', '.npz'),
    ('folder', '/nonexistent/dir', 'data.path', 'existing folder'),
    ('imagenet', '', 'data.dataset', "'CIFAR10'"),
    ('FFHQ', '', 'data.tfrecords_path', 'TFRecords'),
])
def test_missing_dataset_errors(dataset, path, field, allowed):
    with pytest.raises(ConfigError) as err:
        pipelines.get_batches(make_config(dataset, path), **ONE)
    msg = str(err.value)
    assert field in msg and allowed in msg and '\n' not in msg


def test_empty_folder_and_mixed_channels(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('no images')
    with pytest.raises(ConfigError, match=r'data.path.*holds none'):
        pipelines.load_images(make_config('folder', str(tmp_path / 'empty')), 2)
    write_pngs(tmp_path / 'mixed', [uint8_images(1)[0], uint8_images(1, c=1)[0]])
    with pytest.raises(ConfigError, match=r'data.path.*mixed: 1 in img_01.png; 3 in img_00'):
        pipelines.load_images(make_config('folder', str(tmp_path / 'mixed')), 2)
    write_pngs(tmp_path / 'grey', [uint8_images(1, c=1)[0]])
    with pytest.raises(ConfigError, match=r'data.num_channels=3.*\(1\)'):
        pipelines.load_images(make_config('folder', str(tmp_path / 'grey')), 1)


def test_batch_and_value_errors(npz_path, tmp_path):
    with pytest.raises(ConfigError, match=r'training.batch_size=5.*process count'):
        pipelines.get_batches(make_config('npz', npz_path), batch_size=5, process_index=0,
                         process_count=2)
    np.savez(tmp_path / 'bad.npz', images=np.full((2, SIZE, SIZE, 3), 3.0))
    with pytest.raises(ConfigError, match=r'float images in \[0, 1\]'):
        pipelines.load_images(make_config('npz', str(tmp_path / 'bad.npz')), 2)
    np.savez(tmp_path / 'keys.npz', other=np.zeros((2, SIZE, SIZE, 3)))
    with pytest.raises(ConfigError, match="key 'images' or 'arr_0'"):
        pipelines.load_images(make_config('npz', str(tmp_path / 'keys.npz')), 2)


def test_main_exit_code_for_empty_folder(tmp_path):
    (tmp_path / 'empty').mkdir()
    cmd = [sys.executable, 'main.py', '--config=configs/analytic/cifar10.py',
           f'--workdir={tmp_path / "w"}', '--mode=stats', f'--source={tmp_path / "empty"}']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith('error:')]
    assert len(lines) == 1 and 'data.path' in lines[0] and 'holds none' in lines[0]
    assert not (tmp_path / 'w' / 'stats' / 'summary.json').exists()


# -------------------------------------------------------------------------------- TFDS


@pytest.fixture(scope='module')
def tiny_tfds(tmp_path_factory):
    """A TFDS dataset 'pds_tiny_images' prepared offline from generated arrays: train has 12
    SIZE x SIZE RGB images, test has 3 of other sizes (crop + resize)."""
    pytest.importorskip('tensorflow', reason='TFDS pipelines need tensorflow '
                        '(requirements-test.txt: tensorflow-cpu)')
    import tensorflow_datasets as tfds

    class PdsTinyImages(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version('1.0.0')
        code_path = None  # no checksums file (TFDS's lookup needs importlib_resources)

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
                {'image': tfds.features.Image(shape=(None, None, 3))}))

        def _split_generators(self, dl_manager):
            return {'train': self._generate_examples('train'),
                    'test': self._generate_examples('test')}

        def _generate_examples(self, split):
            for i, img in enumerate(TINY[split]):
                yield i, {'image': img}

    data_dir = str(tmp_path_factory.mktemp('tfds'))
    PdsTinyImages(data_dir=data_dir).download_and_prepare()
    return data_dir


TINY = {'train': list(uint8_images(12, seed=11)),
        'test': [uint8_images(1, h, w, seed=12 + h)[0] for h, w in ((12, 10), (8, 15), (16, 16))]}


def tfds_config(data_dir, **fields):
    return make_config('tfds:pds_tiny_images', tfds_data_dir=data_dir, **fields)


def as_set(images):
    """Images in [0, 1] as a sorted list of their uint8 bytes (order-free comparison)."""
    return sorted(np.round(np.asarray(im) * 255).astype(np.uint8).tobytes() for im in images)


@pytest.mark.slow
def test_tfds_pipeline(tiny_tfds):
    config = tfds_config(tiny_tfds, random_flip=True)
    train = np.asarray(TINY['train']) / np.float32(255)
    x = pipelines.load_images(config, 12)
    assert x.shape == (12, SIZE, SIZE, 3)
    assert as_set(x) == as_set(train)  # stored order is TFDS's
    np.testing.assert_allclose(np.sort(x.reshape(-1)), np.sort(train.reshape(-1)), atol=1e-6)
    unflipped = tfds_config(tiny_tfds)
    epoch = np.concatenate(take(pipelines.get_batches(unflipped, batch_size=4, **ONE), 3))
    assert as_set(epoch) == as_set(train)
    flipped = take(pipelines.get_batches(config, batch_size=4, **ONE), 5)
    resumed = take(pipelines.get_batches(config, batch_size=4, start_batch=3, **ONE), 2)
    for a, b in zip(flipped[3:], resumed):
        np.testing.assert_array_equal(a, b)
    shards = [np.concatenate(take(pipelines.get_batches(unflipped, batch_size=4, process_index=k,
                                                   process_count=2), 3)) for k in range(2)]
    assert shards[0].shape == (6, SIZE, SIZE, 3)
    assert not set(as_set(shards[0])) & set(as_set(shards[1]))  # disjoint sub-splits
    assert as_set(np.concatenate(shards)) == as_set(train)


@pytest.mark.slow
def test_tfds_eval_split_crop_resize(tiny_tfds):
    config = tfds_config(tiny_tfds, centered=True)
    ev = np.concatenate(list(pipelines.get_batches(config, 'eval', batch_size=2, **ONE)))
    assert ev.shape == (3, SIZE, SIZE, 3) and ev.min() >= -1.0001
    got = (ev + 1) / 2
    got_sorted = [got[i] for i in np.argsort([g.mean() for g in got])]
    ref_imgs = [pil_crop_resize(a, SIZE) for a in TINY['test']]
    ref_sorted = [ref_imgs[i] for i in np.argsort([r.mean() for r in ref_imgs])]
    for g, r in zip(got_sorted, ref_sorted):  # tf.image.resize (antialias) vs PIL bilinear
        np.testing.assert_allclose(g, r, atol=0.03)


@pytest.mark.slow
def test_tfds_errors(tiny_tfds, tmp_path):
    with pytest.raises(ConfigError, match=r"data.dataset.*prepared in .*tfds build"):
        pipelines.get_batches(make_config('CIFAR10', tfds_data_dir=str(tmp_path)), **ONE)
    with pytest.raises(ConfigError, match=r'data\.category'):
        pipelines.get_batches(make_config('LSUN', tfds_data_dir=str(tmp_path)), **ONE)
    assert pipelines.array_source(make_config('CIFAR10'), 'train', 0) is None


def test_tfds_names_match_score_sde():
    from pds.data.tf_sources import tfds_spec

    assert tfds_spec(make_config('CIFAR10'), 'eval') == ('cifar10', 'test', None)
    assert tfds_spec(make_config('SVHN'), 'train') == ('svhn_cropped', 'train', None)
    assert tfds_spec(make_config('CELEBA'), 'eval') == ('celeb_a', 'validation', 140)
    lsun = make_config('LSUN', category='church_outdoor')
    assert tfds_spec(lsun, 'train') == ('lsun/church_outdoor', 'train', None)


def test_tfrecords_ffhq(tmp_path):
    tf = pytest.importorskip('tensorflow', reason='TFRecords need tensorflow')
    arrays = uint8_images(6, 12, 12, seed=21)
    path = str(tmp_path / 'ffhq-r03.tfrecords')
    with tf.io.TFRecordWriter(path) as writer:
        for a in arrays:  # score_sde's format: CHW uint8 bytes and the shape
            chw = np.transpose(a, (2, 0, 1))
            ex = tf.train.Example(features=tf.train.Features(feature={
                'shape': tf.train.Feature(int64_list=tf.train.Int64List(value=chw.shape)),
                'data': tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[chw.tobytes()]))}))
            writer.write(ex.SerializeToString())
    config = make_config('FFHQ', tfrecords_path=path)
    x = pipelines.load_images(config, 6)
    for got, a in zip(x, arrays):
        np.testing.assert_allclose(got, pil_crop_resize(a, SIZE), atol=0.03)
    assert next(pipelines.get_batches(config, **ONE)).shape == (4, SIZE, SIZE, 3)
    with pytest.raises(ConfigError, match=r'data\.tfrecords_path'):
        pipelines.load_images(make_config('FFHQ', tfrecords_path=str(tmp_path / 'no*.tfr')), 2)
