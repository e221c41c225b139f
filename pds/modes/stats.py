"""``--mode=stats``: dataset statistics for PDS masks, a Gaussian-field fit and FID.

From the first n = ``sampling.pds.num_stat_images`` images x_n of the training split, in
[0, 1] (``pds.data.pipelines.load_images``; ``--source``, a folder or an .npz, replaces the
dataset),
writes into ``<workdir>/stats/``:

- ``freq_mask.npy``: log(1 + mean_n |F x_n|^2), F the unnormalised 2-D DFT, (C, H, W)
  float32 (the reference mask format, ``pds.method.masks.frequency_statistic``);
- ``space_mask.npy``: mean_n x_n^2, (C, H, W) float32 (``pds.method.masks.space_statistic``);
- ``spectrum.npz``: ``mean`` (C,) per-channel mean; ``power`` (C, H, W) mean |F x|^2 / (H W)
  (orthonormal DFT units, DC at [0, 0]); ``power_centered`` (C, H, W) the same of x - mean,
  the eigenvalues of a stationary Gaussian field fitted to the data (``GaussianField.spectrum``
  in (C, H, W) order); ``variance`` (C,) = mean over frequencies of ``power_centered``;
  ``num_images``;
- ``fid_stats.npz`` (when ``eval.inception_weights`` exists): ``mu``, ``sigma``, ``num_images``,
  ``resize`` and raw ``features`` (N, 2048) of the images as uint8, readable by
  ``evaluation.metrics.load_stats`` and as ``eval.ref_stats``; otherwise skipped with a note;
- ``summary.json`` last (its presence marks a complete run).

Each file appears whole or not at all (:mod:`pds.storage.outputs`). A workdir with
``summary.json`` holds a complete earlier run, replaced only with ``--overwrite``; files
without it are what a killed run left, and the next run replaces them without being told.

In a multi-process job every process loads the n images, each computes the Inception features
of its share, and process 0 gathers them and writes every file.

The masks are used with ``--config.sampling.pds.freq_mask=<workdir>/stats/freq_mask.npy``.
"""

from __future__ import annotations

import copy
import logging
import os

import numpy as np

from pds.data.pipelines import load_images
from pds.method import masks
from pds.method.masks import power_spectrum
from pds.runtime import distributed
from pds.runtime.errors import ConfigError, positive_int
from pds.storage import outputs, replace

STATS_DIR = 'stats'
FILES = ('freq_mask.npy', 'space_mask.npy', 'spectrum.npz', 'fid_stats.npz', 'summary.json')


def fid_reference(config, images: np.ndarray) -> tuple[dict | None, str]:
    """(arrays of fid_stats.npz, note); arrays is None when FID statistics are skipped."""
    weights = config.eval.get('inception_weights', '') if 'eval' in config else ''
    try:
        from evaluation import metrics
        from evaluation.inception import RESIZE_POLICY
        from evaluation.inception_weights import DEFAULT_OUT, fetch_command
        from pds.quality import inception
    except ImportError as err:
        return None, f'FID statistics skipped: evaluation code unavailable ({err})'
    if not weights or not os.path.isfile(weights):
        return None, (f'FID statistics skipped: no Inception weights at eval.inception_weights='
                      f'{weights!r} (`{fetch_command(weights or DEFAULT_OUT)}` makes them)')
    if images.shape[-1] not in (1, 3):
        return None, f'FID statistics skipped: {images.shape[-1]}-channel images'
    if len(images) < 2:
        return None, 'FID statistics skipped: fewer than 2 images'
    params, _ = inception.inception_params(config)
    mine = images[distributed.share(len(images))]  # each process scores its share
    uint8 = np.clip(np.round(mine * 255.0), 0, 255).astype(np.uint8)
    batch = int(config.eval.get('inception_batch_size', 50))
    feats = distributed.gather_rows(inception.image_features(params, uint8, batch)['pool_3'])
    st = metrics.stats_from_features(feats, resize=RESIZE_POLICY)
    return ({'mu': st.mu, 'sigma': st.sigma, 'num_images': np.int64(st.num_images),
             'resize': np.array(st.resize), 'features': feats.astype(np.float32)},
            f'FID statistics of {len(feats)} images')


def with_source(config, source: str | None):
    """The config reading ``source`` (a folder or an .npz / .npy) instead of its dataset."""
    if not source:
        return config
    if not os.path.exists(source):
        raise ConfigError('--source', source, 'an existing folder of images or .npz / .npy file')
    config = copy.deepcopy(config)
    config.data.dataset = 'folder' if os.path.isdir(source) else 'npz'
    config.data.path = source
    return config


def run(config, workdir: str, overwrite: bool = False, source: str | None = None) -> dict:
    """Write the statistics files (module docstring); returns the summary dict."""
    config = with_source(config, source)
    n = positive_int('sampling.pds.num_stat_images', config.sampling.pds.num_stat_images)
    outputs.prepare_workdir(workdir)
    out_dir = os.path.join(workdir, STATS_DIR)
    paths = {name: os.path.join(out_dir, name) for name in FILES}
    replace.check_not_interrupted(workdir)
    if os.path.exists(paths['summary.json']):  # a complete earlier run
        replace.claim(list(paths.values()), overwrite)
    else:
        left = [name for name, path in paths.items() if os.path.exists(path)]
        if left:
            logging.warning('stats: replacing %s, left by an interrupted run', left)

    images = load_images(config, n)
    fid, note = fid_reference(config, images)  # Inception: every process scores its share
    if not distributed.is_main():  # the statistics are cheap; process 0 writes them
        return {}
    # the earlier files are set aside until every new one is written (pds.storage.replace)
    with replace.replacing(workdir, list(paths.values()), overwrite=True, tag=None):
        summary = _write_stats(config, images, fid, note, paths)
    print(f'stats of {len(images)} images written to {out_dir}', flush=True)
    return summary


def _write_stats(config, images: np.ndarray, fid: dict | None, note: str,
                 paths: dict[str, str]) -> dict:
    """Write the masks, spectrum, FID statistics and (last: the completion mark) summary."""
    masks.save_mask(paths['freq_mask.npy'], masks.frequency_statistic(images))
    masks.save_mask(paths['space_mask.npy'], masks.space_statistic(images))
    spectrum = power_spectrum(images)
    outputs.write_npz(paths['spectrum.npz'], **spectrum)
    if fid is not None:
        outputs.write_npz(paths['fid_stats.npz'], **fid)
    logging.info('stats: %s', note)
    print(note, flush=True)
    summary = {'dataset': config.data.dataset, 'path': config.data.get('path', ''),
               'num_images': len(images), 'image_shape': list(images.shape[1:]),
               'channel_mean': spectrum['mean'].tolist(),
               'channel_variance': spectrum['variance'].tolist(),
               'files': sorted(k for k in FILES[:4] if os.path.exists(paths[k])),
               'fid': note}
    outputs.write_json(paths['summary.json'], summary)
    return summary
