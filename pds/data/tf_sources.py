"""Streaming sources on tf.data: TFDS datasets and score_sde's FFHQ / CelebA-HQ TFRecords.

Only :mod:`pds.data.pipelines` imports this module, and only for those sources, so TensorFlow stays
out of every JAX code path. TensorFlow is told to see no GPU.

Each process reads the k-th of P even sub-splits (TFDS) or every P-th record (TFRecords),
decodes, centre-crops and resizes with score_sde's ops (``tf.image.resize``, bilinear,
antialiased), shuffles with a fixed seed (train), batches B / P and skips ``start_batch``
batches (they are read and dropped, so a resume costs that many reads). Flips,
dequantization and scaling are applied afterwards by :func:`pds.data.pipelines.augment`.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from pds.runtime.errors import ConfigError

# score_sde's TFDS names and splits: (name, train split, eval split, crop before resize).
TFDS_SPECS = {
    'CIFAR10': ('cifar10', 'train', 'test', None),
    'SVHN': ('svhn_cropped', 'train', 'test', None),
    'CELEBA': ('celeb_a', 'train', 'validation', 140),
    'LSUN': ('lsun/{category}', 'train', 'validation', None),
}


def tensorflow():
    """Import TensorFlow (CPU only for this process's TF) or raise a one-line ConfigError."""
    try:
        import tensorflow as tf
    except ImportError:
        raise ConfigError('data.dataset', 'TFDS / TFRecords', 'TensorFlow installed '
                          '(pip install tensorflow-cpu) to read TFDS or TFRecord datasets'
                          ) from None
    with contextlib.suppress(RuntimeError, ValueError):  # devices already initialised
        tf.config.set_visible_devices([], 'GPU')
    return tf


def tfds_spec(config, split: str) -> tuple[str, str, int | None]:
    """(TFDS name, TFDS split, crop size or None) of ``data.dataset`` and a split."""
    name = config.data.dataset
    if name.startswith('tfds:'):
        tfds_name, train_split, eval_split, crop = name[5:], 'train', 'test', None
    else:
        tfds_name, train_split, eval_split, crop = TFDS_SPECS[name]
        if name == 'LSUN':
            category = config.data.get('category', '')
            if not category:
                raise ConfigError('data.category', category,
                                  "an LSUN category, e.g. 'church_outdoor' or 'bedroom'")
            tfds_name = tfds_name.format(category=category)
    if split in ('test', 'validation'):
        return tfds_name, split, crop
    return tfds_name, train_split if split == 'train' else eval_split, crop


def tfds_builder(config, tfds_name: str):
    """The prepared TFDS builder; ConfigError if the dataset is unknown or not prepared."""
    tensorflow()
    import tensorflow_datasets as tfds

    data_dir = config.data.get('tfds_data_dir', '') or None
    try:
        builder = tfds.builder(tfds_name, data_dir=data_dir)
    except Exception as err:  # tfds raises several types for unknown names
        raise ConfigError('data.dataset', config.data.dataset,
                          f'a TFDS dataset ({type(err).__name__}: '
                          f'{str(err).splitlines()[0] if str(err) else tfds_name})') from None
    if not builder.is_prepared():
        if config.data.get('tfds_download', False):
            builder.download_and_prepare()
        else:
            where = data_dir or 'the default TFDS data_dir'
            raise ConfigError('data.dataset', config.data.dataset,
                              f'TFDS dataset {tfds_name!r} prepared in {where} (run `tfds build '
                              f'{tfds_name}` with --data_dir, or set data.tfds_download=True)')
    return builder


def tfrecord_files(path: str) -> list[str]:
    """TFRecord files of ``data.tfrecords_path``: a file, a glob, or a folder of *.tfrecords."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, '*.tfrecord*')))
    else:
        files = sorted(glob.glob(path)) if path else []
    if not files:
        raise ConfigError('data.tfrecords_path', path, 'an existing TFRecord file, glob or '
                          'folder of *.tfrecords (score_sde format: features shape, data)')
    return files


def crop_resize_tf(tf, image, size: int, crop: int | None):
    """float image (H, W, C) in [0, 1] -> centre crop (``crop`` or the shorter side) ->
    bilinear antialiased resize to (size, size), as score_sde's central_crop + resize."""
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    c = tf.minimum(h, w) if crop is None else tf.minimum(tf.minimum(h, w), crop)
    image = tf.image.crop_to_bounding_box(image, (h - c) // 2, (w - c) // 2, c, c)
    return tf.image.resize(image, [size, size], method='bilinear', antialias=True)


def _parse_tfrecord(tf, record):
    feats = tf.io.parse_single_example(record, {
        'shape': tf.io.FixedLenFeature([3], tf.int64),
        'data': tf.io.FixedLenFeature([], tf.string)})
    image = tf.reshape(tf.io.decode_raw(feats['data'], tf.uint8), feats['shape'])
    return tf.transpose(image, (1, 2, 0))  # stored CHW


def _image_dataset(config, split: str, process_index: int, process_count: int
                   ) -> tuple[Any, Any]:
    """(tf, dataset of float32 (size, size, C) images in [0, 1]) for this process, in order."""
    tf = tensorflow()
    size, channels = int(config.data.image_size), int(config.data.num_channels)
    name = config.data.dataset
    if name in ('FFHQ', 'CelebAHQ'):
        files = tfrecord_files(config.data.tfrecords_path)
        ds = tf.data.TFRecordDataset(files).shard(process_count, process_index)
        ds = ds.map(lambda r: _parse_tfrecord(tf, r))
        crop = None
    else:
        import tensorflow_datasets as tfds

        tfds_name, tfds_split, crop = tfds_spec(config, split)
        builder = tfds_builder(config, tfds_name)
        if tfds_split not in builder.info.splits:
            raise ConfigError('split', split, f'a split of {tfds_name}: '
                              + ', '.join(sorted(builder.info.splits)))
        sub = tfds.even_splits(tfds_split, n=process_count)[process_index]
        options = tf.data.Options()
        options.deterministic = True
        ds = builder.as_dataset(split=sub, shuffle_files=False,
                                read_config=tfds.ReadConfig(options=options))
        ds = ds.map(lambda ex: ex['image'])

    def prep(image):
        if image.dtype == tf.uint8:
            image = tf.cast(image, tf.float32) / 255.0
        else:
            image = tf.image.convert_image_dtype(image, tf.float32)
        if image.shape.rank == 2:
            image = image[..., None]
        tf.debugging.assert_equal(tf.shape(image)[2], channels,
                                  message=f'images with data.num_channels={channels} channels')
        return crop_resize_tf(tf, image, size, crop)

    return tf, ds.map(prep)


def stream_batches(config, split: str, batch_size: int, start_batch: int, seed: int,
                   train: bool, repeat: bool, process_index: int, process_count: int
                   ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """This process's batches as (images (B / P, H, W, C) in [0, 1], their global stream
    positions (B / P,)), before augmentation and scaling (``pds.data.pipelines.augment``,
    applied by :func:`pds.data.pipelines.get_batches`)."""
    tf, ds = _image_dataset(config, split, process_index, process_count)
    local = batch_size // process_count
    if train:  # shuffle within each epoch (reshuffled every epoch), then repeat
        buffer = int(config.data.get('shuffle_buffer', 10000))
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(local, drop_remainder=repeat).skip(start_batch).prefetch(2)
    del tf

    def gen():
        b = start_batch
        for images in ds.as_numpy_iterator():
            pos = b * batch_size + process_index * local + np.arange(len(images))
            yield images, pos
            b += 1

    return gen()


def load_images(config, n: int, split: str = 'train') -> np.ndarray:
    """The first n images of the split in stored order, float32 (N, H, W, C) in [0, 1]."""
    _, ds = _image_dataset(config, split, 0, 1)
    batches = list(ds.take(n).batch(min(n, 256)).as_numpy_iterator())
    if not batches:
        size, channels = int(config.data.image_size), int(config.data.num_channels)
        return np.zeros((0, size, size, channels), np.float32)
    return np.concatenate(batches).astype(np.float32)
