"""Real photographs offline: RGB patches cut from the colour photographs in scikit-image's wheel.

``data.dataset = 'photos'`` (configs/photo/). The photographs and their terms, as scikit-image
0.26's ``skimage.data`` docstrings state them (docs/photos.md lists the same):

==================== =========== ===========================================================
name                 size (HxW)  licence (skimage.data docstring)
==================== =========== ===========================================================
astronaut            512 x 512   NASA; no known copyright restrictions, public domain
chelsea              300 x 451   CC0 by the photographer (Stefan van der Walt)
coffee               400 x 600   CC0 by the photographer (Rachel Michetti)
rocket               427 x 640   SpaceX; released into the public domain
hubble_deep_field    872 x 1000  NASA / HubbleSite; may be freely used, public domain
immunohistochemistry 512 x 512   CMMI; no known copyright restrictions
retina               1411 x 1411 Wikimedia Commons; CC0 1.0 (M. Haggstrom, 2014)
==================== =========== ===========================================================

Each photograph (uint8 / 255, float32 [0, 1]) is first shrunk by the integer factor
f = ``data.photo_downscale`` (f x f box mean over the top-left floor(H/f) f x floor(W/f) f
pixels), then patches of P x P = ``data.image_size`` are cut at integer positions.

Splits. Every pixel of a photograph is either a training pixel or held out; a held-out pixel
carries the part 'eval' (reference A) or 'eval_b' (reference B):

- ``data.photo_holdout = 'blocks'`` (the reference sets): the photograph is tiled by cells of
  S = P + P // 2 pixels; cell (row j, column i) is held out when (i + 3 j) mod 8 = 0 (one cell in
  8, spread evenly, never two adjacent), part A for even j and B for odd j. Reference patches
  lie inside one held-out cell, so they come from every part of each photograph, as the training
  patches do: the training distribution, without its pixels.
- ``'region'`` (a generalisation check only, never the floor): the right-most W // 8 columns
  are held out, cut into bands of S rows, part A for even bands and B for odd ones. The
  content there differs from the rest of the photograph, so distances to it mix
  generalisation with a change of content.

A training patch is a P x P window none of whose pixels lies within ``data.photo_gap`` = g
pixels (Chebyshev distance <= g) of a held-out pixel: at least g pixels separate every training
patch from every reference patch. A reference patch of part A (B) is a window all of whose
pixels carry part A (B).

Drawing. Example i of a part is a function of (seed, part, i) only: a photograph k drawn with
probability w_k, then a position uniformly among that photograph's valid windows for the part.
``data.photo_weighting = 'equal'`` gives w_k = 1 / K, so a large photograph (retina has 7.6
times astronaut's pixels) counts as much as a small one; 'area' makes w_k proportional to the
photograph's count of valid windows (every window equally likely). Draws are independent and
with replacement, so the source is endless (``num_examples`` None, like the Gaussian field).
Flips are the pipeline's (``data.random_flip``: horizontal, training only).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from pds.data.source import ArraySource
from pds.runtime.errors import ConfigError, check_choice, positive_int

PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'hubble_deep_field',
          'immunohistochemistry', 'retina')
LICENCES = {
    'astronaut': 'NASA; no known copyright restrictions, public domain',
    'chelsea': 'CC0 by the photographer (Stefan van der Walt)',
    'coffee': 'CC0 by the photographer (Rachel Michetti)',
    'rocket': 'SpaceX; released into the public domain',
    'hubble_deep_field': 'NASA / HubbleSite; may be freely used, public domain',
    'immunohistochemistry': 'CMMI; no known copyright restrictions',
    'retina': 'Wikimedia Commons; CC0 1.0 Universal (M. Haggstrom, 2014)',
}
PARTS = ('train', 'eval', 'eval_b')
HOLDOUTS = ('blocks', 'region')
WEIGHTINGS = ('equal', 'area')
HOLDOUT_EVERY = 8  # one cell in 8 (blocks), the right-most W // 8 columns (region)
_TAG_PHOTO = 3  # folded into the draw seeds (pipelines uses 0, 1, 2)
_PART_LABEL = {'eval': 1, 'eval_b': 2}


@functools.lru_cache(maxsize=16)
def load_photo(name: str, downscale: int) -> np.ndarray:
    """Photograph ``name`` from ``skimage.data`` as float32 (H // f, W // f, 3) in [0, 1],
    f = ``downscale``, by an f x f box mean (exact area average)."""
    if name not in PHOTOS:
        raise ConfigError('data.photos', name, 'names from ' + ', '.join(PHOTOS))
    try:
        from skimage import data as skdata
    except ImportError as err:
        raise ConfigError('data.dataset', 'photos', 'scikit-image installed (pip install -r '
                          f'requirements.txt): {err}') from None
    image = np.asarray(getattr(skdata, name)(), np.float64)[..., :3] / 255.0
    h, w = image.shape[0] // downscale, image.shape[1] // downscale
    image = image[:h * downscale, :w * downscale]
    image = image.reshape(h, downscale, w, downscale, 3).mean(axis=(1, 3))
    return image.astype(np.float32)


def holdout_labels(h: int, w: int, patch: int, holdout: str) -> np.ndarray:
    """(h, w) int8: 0 for training pixels, 1 for held-out part A, 2 for part B (module
    docstring: 'blocks' cells of S = patch + patch // 2, or the 'region' strip)."""
    cell = patch + patch // 2
    labels = np.zeros((h, w), np.int8)
    rows = np.arange(h) // cell
    if holdout == 'blocks':
        cols = np.arange(w) // cell
        held = (cols[None, :] + 3 * rows[:, None]) % HOLDOUT_EVERY == 0
        part = np.where(rows % 2 == 0, 1, 2)[:, None]
        labels[held] = np.broadcast_to(part, (h, w))[held]
    else:
        start = w - w // HOLDOUT_EVERY
        labels[:, start:] = np.where(rows % 2 == 0, 1, 2)[:, None]
    return labels


def _window_sums(mask: np.ndarray, patch: int) -> np.ndarray:
    """Sum of ``mask`` over every patch x patch window, (h - patch + 1, w - patch + 1),
    by a summed-area table; entry (y, x) is the window with top-left pixel (y, x)."""
    c = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int64)
    c[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1)
    return c[patch:, patch:] - c[:-patch, patch:] - c[patch:, :-patch] + c[:-patch, :-patch]


def valid_positions(labels: np.ndarray, patch: int, gap: int, part: str) -> np.ndarray:
    """Flat top-left positions y * w + x (int64, ascending) of the part's valid windows.

    'train': no pixel of the window within Chebyshev distance ``gap`` of a held-out pixel;
    'eval' / 'eval_b': every pixel of the window carries that part's label.
    """
    from scipy.ndimage import maximum_filter

    h, w = labels.shape
    if h < patch or w < patch:
        return np.zeros(0, np.int64)
    if part == 'train':
        near = maximum_filter((labels > 0).astype(np.int8), size=2 * gap + 1, mode='constant')
        ok = _window_sums(near, patch) == 0
    else:
        ok = _window_sums(labels == _PART_LABEL[part], patch) == patch * patch
    y, x = np.nonzero(ok)
    return (y.astype(np.int64) * w + x).astype(np.int64)


def photo_settings(config) -> dict:
    """The checked ``data.photo*`` fields: names, downscale, holdout, gap, weighting, patch."""
    data = config.data
    names = data.get('photos', PHOTOS)
    names = (names,) if isinstance(names, str) else tuple(names)
    if not names or any(n not in PHOTOS for n in names) or len(set(names)) != len(names):
        raise ConfigError('data.photos', names, 'distinct names from ' + ', '.join(PHOTOS))
    downscale = positive_int('data.photo_downscale', data.get('photo_downscale', 1))
    holdout = data.get('photo_holdout', 'blocks')
    check_choice('data.photo_holdout', holdout, HOLDOUTS)
    patch = positive_int('data.image_size', data.image_size)
    gap = data.get('photo_gap', patch // 4)
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise ConfigError('data.photo_gap', gap, 'an integer >= 0 (pixels)')
    weighting = data.get('photo_weighting', 'equal')
    check_choice('data.photo_weighting', weighting, WEIGHTINGS)
    if int(data.num_channels) != 3:
        raise ConfigError('data.num_channels', data.num_channels, "3 for data.dataset='photos' "
                          '(RGB photographs)')
    return {'names': names, 'downscale': downscale, 'holdout': holdout, 'gap': gap,
            'weighting': weighting, 'patch': patch}


@functools.lru_cache(maxsize=64)  # 7 photographs x 3 parts x a few settings
def _positions(name: str, downscale: int, patch: int, gap: int, holdout: str, part: str
               ) -> np.ndarray:
    image = load_photo(name, downscale)
    labels = holdout_labels(image.shape[0], image.shape[1], patch, holdout)
    return valid_positions(labels, patch, gap, part)


class PhotoSource(ArraySource):
    """Endless source of P x P RGB patches of one part ('train', 'eval' = reference A,
    'eval_b' = reference B) of the photographs (module docstring): ``read(indices)`` ->
    float32 (n, P, P, 3) in [0, 1]; example i is a function of (seed, part, i) only."""

    num_examples = None

    def __init__(self, config, seed: int, part: str):
        check_choice('part', part, PARTS)
        s = photo_settings(config)
        self.part, self.seed, self.patch = part, int(seed), s['patch']
        self.names = s['names']
        self.images = [load_photo(n, s['downscale']) for n in self.names]
        self.positions = [_positions(n, s['downscale'], s['patch'], s['gap'], s['holdout'],
                                     part) for n in self.names]
        empty = [n for n, p in zip(self.names, self.positions) if not len(p)]
        if empty:
            raise ConfigError('data.photo_downscale', s['downscale'], f'a factor that leaves '
                              f'{part} patches of {self.patch}x{self.patch} in every photograph; '
                              f'none in {", ".join(empty)}')
        counts = np.array([len(p) for p in self.positions], np.float64)
        weights = np.ones_like(counts) if s['weighting'] == 'equal' else counts
        self.weights = weights / weights.sum()
        self._cum = np.cumsum(self.weights)

    def locate(self, index: int) -> tuple[int, int, int]:
        """(photograph k, top row y, left column x) of example ``index``."""
        rng = np.random.default_rng([self.seed, _TAG_PHOTO, PARTS.index(self.part), int(index)])
        u, v = rng.random(2)
        k = min(int(np.searchsorted(self._cum, u, side='right')), len(self.names) - 1)
        pos = self.positions[k]
        flat = int(pos[min(int(v * len(pos)), len(pos) - 1)])
        y, x = divmod(flat, self.images[k].shape[1])
        return k, y, x

    def read(self, indices: Sequence[int]) -> np.ndarray:
        p = self.patch
        out = np.empty((len(indices), p, p, 3), np.float32)
        for j, index in enumerate(indices):
            k, y, x = self.locate(index)
            out[j] = self.images[k][y:y + p, x:x + p]
        return out
