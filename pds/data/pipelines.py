"""Input pipelines: batches of training or evaluation images for ``config.data``.

Public API
- :func:`get_batches` (config, split, batch_size, start_batch, seed) -> iterator of float32
  NHWC batches in data space, this process's share of each global batch;
- :func:`load_images` (config, n, split) -> the first n images (N, H, W, C), float32 in [0, 1],
  unscaled and unflipped (for statistics);
- :func:`data_scaler` / :func:`inverse_scaler`: [0, 1] <-> data space (score_sde's scalers);
  :func:`unscale` (x, centered) is the inverse scaler as a plain function.

Sources (``config.data.dataset``)
- an exact target's name (:mod:`pds.analytic.targets`: 'gaussian_field', 'gaussian_mixture'):
  exact samples of the config's field or mixture; example i of a stream is a function of
  (seed, stream, i) only;
- 'photos': RGB patches of the photographs in scikit-image's wheel (``pds.data.photos``):
  split 'train' the training patches, 'eval' reference set A (held-out pixels); example i of a
  split is a function of (seed, split, i) only;
- 'npz': ``data.path``, an ``.npz`` with key 'images' or 'arr_0' (or an ``.npy``), uint8 in
  [0, 255] or float in [0, 1], (N, H, W, C) or (N, H, W);
- 'folder': ``data.path``, a folder of image files, any size (:class:`ImageFolder` says which
  files count and how they decode; ``--mode=fid`` reads folders by the same rule);
- TFDS, named as score_sde names them: 'CIFAR10' (cifar10), 'SVHN' (svhn_cropped), 'CELEBA'
  (celeb_a, centre crop 140 then resize), 'LSUN' (lsun/<data.category>), and 'tfds:<name>'
  for any TFDS image dataset; 'FFHQ' / 'CelebAHQ' from score_sde's TFRecords
  (``data.tfrecords_path``) or from a folder / .npz at ``data.path``.

Images that are not ``data.image_size`` square are centre-cropped to a square of the shorter
side and resized (bilinear, antialiased when shrinking), as score_sde does for LSUN.

Order and determinism. Array sources (gaussian_field, photos, npz, folder) are indexed: global
position p (batch b holds positions [b B, (b + 1) B)) maps to example ``perm_e[p mod N]`` of
epoch e = p // N, ``perm_e`` a permutation drawn from (seed, e) (train) or the identity
(eval). Process k of P takes the k-th of P equal slices of each global batch and reads only
those examples, so the union over processes is exactly the one-process batch. TFDS and
TFRecord sources stream: process k reads the k-th of P even sub-splits, shuffled by tf.data
with a fixed seed. Random flips and uniform dequantization draw from (seed, global position),
so a run resumed at ``start_batch`` continues exactly.

TensorFlow / TFDS are imported only inside the TFDS and TFRecord sources.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from pds.data.source import ArraySource
from pds.runtime.errors import ConfigError
from pds.storage import readers

TFDS_DATASETS = ('CIFAR10', 'SVHN', 'CELEBA', 'LSUN')
PREPARED_DATASETS = ('FFHQ', 'CelebAHQ')
# besides the exact targets' names (pds.analytic.targets) and 'tfds:<name>'
DATASETS = ('photos', 'npz', 'folder', *TFDS_DATASETS, *PREPARED_DATASETS)
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm')
SPLITS = ('train', 'eval')

# Stream tags folded into seeds, so train / eval / augmentation draws never coincide.
_TAG_PERM, _TAG_AUG, _TAG_FIELD = 0, 1, 2
_SPLIT_TAG = {'train': 0, 'eval': 1}


# ------------------------------------------------------------------------------------------
# Scalers and per-example augmentation (numpy, shared by every source)


def data_scaler(config) -> Callable[[np.ndarray], np.ndarray]:
    """[0, 1] -> data space: 2 x - 1 when ``data.centered``, else the identity."""
    return (lambda x: 2.0 * x - 1.0) if config.data.centered else (lambda x: x)


def unscale(x, centered: bool):
    """Data space -> [0, 1]: (x + 1) / 2 when ``centered``, else ``x`` itself (unchanged)."""
    return (x + 1.0) / 2.0 if centered else x


def inverse_scaler(config) -> Callable[[np.ndarray], np.ndarray]:
    """Data space -> [0, 1]: :func:`unscale` with ``data.centered``."""
    return functools.partial(unscale, centered=bool(config.data.centered))


def augment(images: np.ndarray, positions: np.ndarray, config, seed: int, train: bool
            ) -> np.ndarray:
    """Flip (train, ``data.random_flip``: each example with probability 1/2), dequantize
    (``data.uniform_dequantization``: (255 x + u) / 256, u ~ U[0, 1)) and scale.

    images (n, H, W, C) in [0, 1]; positions (n,) global stream positions, whose
    (seed, position) seeds each example's draws. Returns float32 (n, H, W, C) in data space.
    """
    out = np.array(images, np.float32, copy=True)
    flip = bool(config.data.random_flip) and train
    deq = bool(config.data.uniform_dequantization)
    if flip or deq:
        for i, pos in enumerate(np.asarray(positions, np.int64)):
            rng = np.random.default_rng([seed, _TAG_AUG, int(pos)])
            if flip and rng.random() < 0.5:
                out[i] = out[i, :, ::-1]
            if deq:
                u = rng.random(out.shape[1:], dtype=np.float32)
                out[i] = (out[i] * 255.0 + u) / 256.0
    return data_scaler(config)(out).astype(np.float32)


# ------------------------------------------------------------------------------------------
# Crop and resize (score_sde: central crop to the shorter side, then antialiased resize)


def central_crop_box(h: int, w: int, size: int) -> tuple[int, int]:
    """(top, left) of a centred size x size crop of an h x w image."""
    return (h - size) // 2, (w - size) // 2


def crop_resize(image: np.ndarray, size: int, crop: int | None = None) -> np.ndarray:
    """Centre-crop an (H, W, C) float image to ``crop`` (default: the shorter side), then
    resize to (size, size) per channel with PIL's bilinear filter in float (antialiased when
    shrinking). Returns float32 (size, size, C)."""
    from PIL import Image

    h, w = image.shape[:2]
    c = min(h, w) if crop is None else min(crop, h, w)
    top, left = central_crop_box(h, w, c)
    image = np.asarray(image[top: top + c, left: left + c], np.float32)
    if c == size:
        return image
    chans = [np.asarray(Image.fromarray(image[..., k], mode='F').resize(
        (size, size), Image.Resampling.BILINEAR)) for k in range(image.shape[2])]
    return np.stack(chans, axis=-1).astype(np.float32)


# ------------------------------------------------------------------------------------------
# Indexed sources


class ExactTargetSource(ArraySource):
    """Exact samples of the exact target ``data.dataset`` names (:mod:`pds.analytic.targets`:
    the config's Gaussian field or mixture), mapped to [0, 1] space (the inverse of the
    centering). Example i is ``target.sample(default_rng([seed, 2, stream, i]), 1, H, W)``."""

    def __init__(self, config, seed: int, stream: int):
        from pds.analytic.targets import data_target

        self.target = data_target(config)  # one mean per data channel, else a ConfigError
        self.centered = bool(config.data.centered)
        self.size = int(config.data.image_size)
        self.seed, self.stream = int(seed), int(stream)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        h = w = self.size
        if not len(indices):
            return np.zeros((0, h, w, self.target.num_channels), np.float32)
        x = np.concatenate([
            self.target.sample(np.random.default_rng([self.seed, _TAG_FIELD, self.stream, int(i)]),
                               1, h, w) for i in indices])
        x = unscale(x, self.centered)
        return x.astype(np.float32)


def _to_unit_float(arr: np.ndarray, field: str, value) -> np.ndarray:
    """uint8 [0, 255] -> [0, 1]; float arrays must already lie in [0, 1]."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32)
    raise ConfigError(field, value, f'uint8 images in [0, 255] or float images in [0, 1], '
                      f'got dtype {arr.dtype}')


class NpzSource(ArraySource):
    """An ``.npz`` (key 'images' or 'arr_0') or ``.npy`` array, (N, H, W, C) or (N, H, W)."""

    def __init__(self, path: str, size: int, channels: int, field: str = 'data.path'):
        if not path or not os.path.isfile(path):
            raise ConfigError(field, path, "an existing .npz (key 'images' or 'arr_0') or "
                              '.npy file of images (N, H, W, C)')
        self.size = size
        _, arr = readers.read_image_array(
            path, field, ('images', 'arr_0'), allow_float=True, ndims=(3, 4), mmap=True,
            expected="an .npz (key 'images' or 'arr_0') or .npy file of images (N, H, W, C) "
                     'or (N, H, W), uint8 in [0, 255] or float in [0, 1]')
        if arr.ndim == 3:
            arr = arr[..., None]
        if arr.shape[3] != channels:
            raise ConfigError('data.num_channels', channels,
                              f'the channel count of {path} ({arr.shape[3]})')
        if np.issubdtype(arr.dtype, np.floating):
            lo, hi = float(np.min(arr)), float(np.max(arr))  # NaN if any value is NaN
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise ConfigError(field, path, 'float images in [0, 1], finite; the array '
                                  'holds NaN or infinite values')
            if lo < -1e-6 or hi > 1 + 1e-6:
                raise ConfigError(field, path, f'float images in [0, 1], got [{lo:g}, {hi:g}]')
        self.arr, self.path, self.field = arr, path, field
        self.num_examples = len(arr)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, np.int64)
        order = np.argsort(idx, kind='stable')
        raw = np.asarray(self.arr[idx[order]])
        x = np.empty_like(raw)
        x[order] = raw
        x = _to_unit_float(x, self.field, self.path)
        if x.shape[1] == x.shape[2] == self.size:
            return x
        return np.stack([crop_resize(im, self.size) for im in x]) if len(x) else \
            np.zeros((0, self.size, self.size, x.shape[3]), np.float32)


# ------------------------------------------------------------------------------------------
# Folders of image files: one rule for every reader (data.dataset='folder', FFHQ / CelebAHQ
# at data.path, --mode=stats --source, --mode=fid --source)

def list_images(path: str, field: str = 'data.path') -> list[str]:
    """The image files of a folder (:class:`ImageFolder`'s rule): every file under ``path``,
    recursively, whose name ends in one of ``IMAGE_EXTENSIONS`` (any case), sorted by path;
    ConfigError if ``path`` is not a folder or holds none."""
    if not path or not os.path.isdir(path):
        raise ConfigError(field, path, 'an existing folder of image files')
    files = sorted(os.path.join(root, f) for root, _, names in os.walk(path) for f in names
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise ConfigError(field, path, 'a folder holding image files ('
                          + ', '.join(IMAGE_EXTENSIONS) + '); it holds none')
    return files


def image_channels(file: str, field: str = 'data.path') -> int:
    """Channel count of an image file from its header (palette images count as RGB); a
    ConfigError if it is unreadable or over ``readers.MAX_IMAGE_PIXELS``."""
    return readers.image_channels(file, field)


def read_image(file: str, channels: int, field: str = 'data.path') -> np.ndarray:
    """One image file as float32 (H, W, C) in [0, 1] (:class:`ImageFolder`'s decoding,
    ``pds.storage.readers.read_image``)."""
    return readers.read_image(file, field, channels)


class ImageFolder:
    """A folder of image files, read one file at a time. The one rule for which files are
    its images and how they decode:

    - files: every file under the folder, recursively, whose name ends in one of
      ``IMAGE_EXTENSIONS`` (any case); other files are ignored; none is a ConfigError;
    - order: sorted by path;
    - channels: every image has the same channel count C, read from the file headers (1: grey,
      including 16-bit, 32-bit and float grey; 2: grey + alpha; 3: RGB, palette, YCbCr;
      4: RGBA, CMYK); mixed counts are a ConfigError naming a file of each;
    - decoding (:func:`read_image`): float32 (H, W, C) in [0, 1]; 8-bit images are converted
      by PIL to L / LA / RGB / RGBA and divided by 255, 16-bit and 32-bit integer grey by
      65535, float grey is taken as is; an unreadable file is a ConfigError. Sizes may differ.

    ``field`` names the setting the folder came from in error messages.
    """

    def __init__(self, path: str, field: str = 'data.path'):
        self.path, self.field = path, field
        self.files = list_images(path, field)
        counts = {}
        for f in self.files:
            counts.setdefault(image_channels(f, field), f)
        if len(counts) > 1:
            found = '; '.join(f'{c} in {os.path.relpath(f, path)}'
                              for c, f in sorted(counts.items()))
            raise ConfigError(field, path, f'images with one channel count, found mixed: {found}')
        self.channels = next(iter(counts))

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> np.ndarray:
        """Image ``index`` (in sorted order) as float32 (H, W, C) in [0, 1]."""
        return read_image(self.files[int(index)], self.channels, self.field)


class FolderSource(ArraySource):
    """An :class:`ImageFolder` of ``channels``-channel images, any size; decoded on demand,
    centre-cropped and resized."""

    def __init__(self, path: str, size: int, channels: int, field: str = 'data.path'):
        self.folder = ImageFolder(path, field)
        if self.folder.channels != channels:
            raise ConfigError('data.num_channels', channels, 'the channel count of the images '
                              f'in {path} ({self.folder.channels})')
        self.files = self.folder.files
        self.size, self.channels = size, channels
        self.num_examples = len(self.files)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        out = np.empty((len(indices), self.size, self.size, self.channels), np.float32)
        for i, idx in enumerate(indices):
            out[i] = crop_resize(self.folder.read(idx), self.size)
        return out


# ------------------------------------------------------------------------------------------
# Source selection


def resolve_split(split: str) -> str:
    if split not in SPLITS and split not in ('test', 'validation'):
        raise ConfigError('split', split, "'train' or 'eval' (or a TFDS split name)")
    return 'train' if split == 'train' else 'eval'


def exact_targets() -> tuple[str, ...]:
    """The datasets drawn from an exact target (:mod:`pds.analytic.targets`)."""
    from pds.analytic.targets import target_names

    return target_names()


def dataset_name(config) -> str:
    name = config.data.dataset
    known = (*exact_targets(), *DATASETS)
    if not isinstance(name, str) or not (name in known or name.startswith('tfds:')):
        raise ConfigError('data.dataset', name,
                          'allowed: ' + ', '.join(map(repr, (*known, 'tfds:<name>'))))
    return name


def array_source(config, split: str, seed: int, path: str | None = None) -> ArraySource | None:
    """The indexed source of ``config.data``, or None for a streaming (TFDS / TFRecord) one.
    ``path`` overrides ``data.path``."""
    name = dataset_name(config)
    size, channels = int(config.data.image_size), int(config.data.num_channels)
    path = config.data.get('path', '') if path is None else path
    if name in exact_targets():
        return ExactTargetSource(config, seed, _SPLIT_TAG[resolve_split(split)])
    if name == 'photos':
        from pds.data.photos import PhotoSource

        return PhotoSource(config, seed, resolve_split(split))
    if name in PREPARED_DATASETS and config.data.get('tfrecords_path', '') and not path:
        return None
    if name in ('npz', 'folder', *PREPARED_DATASETS):
        if name in PREPARED_DATASETS and not path:
            raise ConfigError('data.tfrecords_path', '', f'the TFRecords of {name} (or a folder '
                              'or .npz of its images at data.path)')
        if name == 'folder' or (name != 'npz' and os.path.isdir(path)):
            return FolderSource(path, size, channels)
        return NpzSource(path, size, channels)
    return None


# ------------------------------------------------------------------------------------------
# Batching


def process_share(positions: np.ndarray, process_index: int, process_count: int
                  ) -> np.ndarray:
    """The process_index-th of process_count near-equal contiguous slices of a global batch."""
    return np.array_split(positions, process_count)[process_index]


@functools.lru_cache(maxsize=4)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, _TAG_PERM, epoch]).permutation(n)


def example_indices(positions: np.ndarray, n: int | None, seed: int, shuffle: bool
                    ) -> np.ndarray:
    """Example index of each global stream position (epoch-wise permutations if shuffle)."""
    positions = np.asarray(positions, np.int64)
    if n is None:
        return positions
    if not shuffle:
        return positions % n
    out = np.empty_like(positions)
    for epoch in np.unique(positions // n):
        sel = positions // n == epoch
        out[sel] = _permutation(seed, int(epoch), n)[positions[sel] % n]
    return out


def _indexed_batches(source: ArraySource, config, batch_size: int, start_batch: int,
                     seed: int, train: bool, repeat: bool, process_index: int,
                     process_count: int) -> Iterator[np.ndarray]:
    n = source.num_examples
    total = None if repeat else (n if n is not None else int(config.eval.num_samples))
    b = start_batch
    while True:
        lo = b * batch_size
        hi = lo + batch_size if total is None else min(lo + batch_size, total)
        if hi <= lo:
            return
        pos = process_share(np.arange(lo, hi), process_index, process_count)
        images = source.read(example_indices(pos, n, seed, shuffle=train))
        yield augment(images, pos, config, seed, train)
        b += 1


def _check_batch(field: str, batch_size, process_count: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1 or batch_size % process_count:
        raise ConfigError(field, batch_size,
                          f'a positive multiple of the process count ({process_count})')
    return batch_size


def _process_layout(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    return int(process_index), int(process_count)


def get_batches(config, split: str = 'train', batch_size: int | None = None,
                start_batch: int = 0, seed: int | None = None, *,
                repeat: bool | None = None, process_index: int | None = None,
                process_count: int | None = None) -> Iterator[np.ndarray]:
    """Batches of ``config.data`` for this process, float32 (B / P, H, W, C) in data space.

    split: 'train' (shuffled, flipped if ``data.random_flip``, endless) or 'eval' (the
      dataset's evaluation split in order, one pass; 'test' / 'validation' also accepted).
    batch_size: the global batch B (default ``training.batch_size`` for train,
      ``eval.batch_size`` otherwise); it must be a multiple of the process count P.
    start_batch: global batches already consumed; batch k of a resumed iterator equals batch
      start_batch + k of a fresh one.
    seed: default ``config.seed``.
    repeat: endless iterator (default: True for train, False for eval). A one-pass eval of
      an endless source (gaussian_field) has ``eval.num_samples`` examples; the last batch
      of a one-pass iterator may be short.
    process_index, process_count: default ``jax.process_index()`` / ``jax.process_count()``.
    """
    which = resolve_split(split)
    train = which == 'train'
    seed = int(config.seed if seed is None else seed)
    repeat = train if repeat is None else bool(repeat)
    field = 'training.batch_size' if train else 'eval.batch_size'
    if batch_size is None:
        batch_size = config.training.batch_size if train else config.eval.batch_size
    process_index, process_count = _process_layout(process_index, process_count)
    _check_batch(field, batch_size, process_count)
    if not isinstance(start_batch, int) or start_batch < 0:
        raise ConfigError('start_batch', start_batch, 'an integer >= 0')
    source = array_source(config, split, seed)
    if source is not None:
        return _indexed_batches(source, config, batch_size, start_batch, seed, train, repeat,
                                process_index, process_count)
    from pds.data import tf_sources

    stream = tf_sources.stream_batches(config, split, batch_size, start_batch, seed, train,
                                       repeat, process_index, process_count)
    return (augment(images, pos, config, seed, train) for images, pos in stream)


def load_images(config, n: int, split: str = 'train', path: str | None = None) -> np.ndarray:
    """The first n images of a split, in stored order, float32 (N, H, W, C) in [0, 1],
    unscaled and unflipped. A finite dataset with fewer than n images gives all of them
    (with a logged note). ``path`` overrides ``data.path``."""
    if not isinstance(n, int) or n < 1:
        raise ConfigError('sampling.pds.num_stat_images', n, 'an integer >= 1')
    seed = int(config.seed)
    source = array_source(config, split, seed, path)
    if source is None:
        from pds.data import tf_sources

        images = tf_sources.load_images(config, n, split)
    else:
        count = n if source.num_examples is None else min(n, source.num_examples)
        images = source.read(np.arange(count))
    if len(images) < n:
        logging.warning('data: %d images requested, the dataset has %d; using all of them',
                        n, len(images))
    return images
