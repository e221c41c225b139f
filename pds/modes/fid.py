"""``--mode=fid --source=<images>``: score any set of images against ``eval.ref_stats``.

``--source`` is either

* a folder of image files, read by the rule of every image folder in this codebase
  (``pds.data.pipelines.ImageFolder``: files ending in one of
  ``pds.data.pipelines.IMAGE_EXTENSIONS``, searched recursively, sorted by path, one channel
  count for all), here grey or RGB (C = 1 or 3), all of the same size, and quantized as
  clip(round(255 x)) to uint8 (exact for 8-bit files), or
* an ``.npz`` with key ``samples`` (as ``--mode=sample`` and ``--mode=eval`` write) or
  ``arr_0`` (``np.savez(path, images)``, as many codebases write): uint8 (N, H, W, C), C = 1
  or 3.

Images go through the same FID Inception and resize as ``--mode=eval``
(``evaluation.inception.RESIZE_POLICY``), ``eval.inception_batch_size`` at a time, so the
numbers agree with an eval report of the same images. Writes ``<workdir>/fid_report.json``:
FID, IS and KID (see ``pds.quality.inception``), the image count and shape, the source and the
weights' SHA-256. Errors (one line, exit code 2): missing or unreadable source, a folder
without images, images of different sizes or channel counts, reference statistics of another
dimension.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator

import numpy as np

from pds.data.pipelines import ImageFolder
from pds.quality import inception
from pds.runtime.errors import ConfigError
from pds.storage import outputs, readers, replace

NPZ_KEYS = ('samples', 'arr_0')


@dataclasses.dataclass
class ImageSource:
    """A set of images: a folder (files, read lazily) or an in-memory uint8 array."""

    path: str
    kind: str  # 'folder' | 'npz'
    shape: tuple[int, int, int]  # (H, W, C)
    folder: ImageFolder | None = None
    array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.folder) if self.array is None else len(self.array)

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        """uint8 (<= size, H, W, C) blocks in order; a folder holds one block in memory."""
        for lo in range(0, len(self), size):
            if self.array is not None:
                yield self.array[lo: lo + size]
            else:
                yield np.stack([self._read(i) for i in range(lo, min(lo + size, len(self)))])

    def _read(self, index: int) -> np.ndarray:
        """Folder image ``index`` as uint8 (H, W, C), checked to have the source's shape."""
        arr = _to_uint8(self.folder.read(index))
        if arr.shape != self.shape:
            raise ConfigError('--source', self.folder.files[index],
                              f'images of one size: {self.shape[1]}x{self.shape[0]} like the '
                              f'first, not {arr.shape[1]}x{arr.shape[0]}')
        return arr


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 clip(round(255 x)) (exact for images decoded from 8 bits)."""
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def _folder_source(path: str) -> ImageSource:
    folder = ImageFolder(path, '--source')
    if folder.channels not in (1, 3):
        raise ConfigError('--source', path, f'grey or RGB images (C = 1 or 3), found '
                          f'{folder.channels}-channel images')
    shape = _to_uint8(folder.read(0)).shape
    return ImageSource(path, 'folder', shape, folder=folder)


def _npz_source(path: str) -> ImageSource:
    _, arr = readers.read_image_array(
        path, '--source', NPZ_KEYS, allow_float=False, channels=(1, 3), allow_npy=False,
        expected="an .npz with key 'samples' or 'arr_0' of uint8 NHWC images (N >= 1, "
                 'C = 1 or 3)')
    return ImageSource(path, 'npz', tuple(arr.shape[1:]), array=arr)


def open_source(source: str | None) -> ImageSource:
    """The images of ``--source`` (ConfigError when missing, empty or unreadable)."""
    if not source:
        raise ConfigError('--source', source, 'a folder of images or an .npz of '
                          "uint8 images ('samples' or 'arr_0') for --mode=fid")
    if os.path.isdir(source):
        return _folder_source(source)
    if os.path.isfile(source) and source.lower().endswith('.npz'):
        return _npz_source(source)
    what = 'does not exist' if not os.path.exists(source) else 'is neither a folder nor .npz'
    raise ConfigError('--source', source, f'a folder of images or an .npz file '
                      f'(this path {what})')


def source_features(params: dict, src: ImageSource,
                    batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(pool_3 (N, 2048), logits (N, 1008)) of every image of ``src``, in order."""
    pool3, logits = [], []
    for block in src.chunks(batch):
        feats = inception.image_features(params, block, batch)
        pool3.append(feats['pool_3'])
        logits.append(feats['logits'])
    return np.concatenate(pool3), np.concatenate(logits)


def run(config, workdir: str, overwrite: bool = False, source: str | None = None) -> dict:
    """Score ``source`` against ``eval.ref_stats``; returns and writes the report."""
    t0 = time.perf_counter()
    outputs.prepare_workdir(workdir)
    report_path = os.path.join(workdir, 'fid_report.json')
    replace.check_not_interrupted(workdir)
    replace.claim([report_path], overwrite)  # written once, whole, at the end
    inception.check_eval_fields(config)
    src = open_source(source)
    if not config.eval.ref_stats:
        raise ConfigError('eval.ref_stats', config.eval.ref_stats,
                          'a reference statistics .npz to score against (--mode=stats '
                          'writes one)')
    ref = inception.load_reference(config.eval.ref_stats)  # the cheaper check first
    params, digest = inception.inception_params(config)
    pool3, logits = source_features(params, src, int(config.eval.inception_batch_size))
    report = {'source': os.path.abspath(src.path), 'source_kind': src.kind,
              'image_shape': list(src.shape),
              'inception_weights': {'path': config.eval.inception_weights, 'sha256': digest}}
    report.update(inception.score(pool3, logits, ref, config))
    report['wall_seconds'] = round(time.perf_counter() - t0, 3)
    outputs.write_json(report_path, report)
    return report
