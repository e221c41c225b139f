"""PDS masks: data statistics, the reference's alpha transform, and the reference file format.

Statistics of images x_n in [0, 1], stored channel-first (C, H, W) as float32 ``.npy``:
- frequency  f(c, u, v) = log(1 + mean_n |F[x_n](c, u, v)|^2), F the unnormalised 2-D DFT
  (DC at [0, 0], no fftshift);
- space      s(c, h, w) = mean_n x_n(c, h, w)^2.

Transform to gains (alpha > 1):
- 'normalized' (current reference): q <- q / max(q) (one max over all channels), then
  gain = alpha / (q + alpha - 1), which lies in [1, alpha / (alpha - 1)] for q in [0, 1];
- 'legacy' (pre-2023): frequency gain alpha / (f + alpha - 1) without normalisation, and
  space gain 1 / s.
"""

from __future__ import annotations

import io

import numpy as np

from pds.runtime.errors import ConfigError, check_choice
from pds.storage import outputs, readers

TRANSFORMS = ('normalized', 'legacy')


def frequency_statistic(images: np.ndarray) -> np.ndarray:
    """f (C, H, W) from images (N, H, W, C) in [0, 1]."""
    x = np.asarray(images, np.float64)
    power = np.zeros((x.shape[3], x.shape[1], x.shape[2]))
    for chunk in np.array_split(x, max(1, len(x) // 32)):
        spec = np.fft.fft2(np.moveaxis(chunk, 3, 1), axes=(2, 3))
        power += np.sum(np.abs(spec) ** 2, axis=0)
    return np.log1p(power / len(x)).astype(np.float32)


def space_statistic(images: np.ndarray) -> np.ndarray:
    """s (C, H, W) from images (N, H, W, C) in [0, 1]."""
    x = np.asarray(images, np.float64)
    return np.moveaxis(np.mean(x**2, axis=0), 2, 0).astype(np.float32)


def power_spectrum(images: np.ndarray) -> dict[str, np.ndarray]:
    """Mean and orthonormal power spectra of images (N, H, W, C): ``mean`` (C,) per channel,
    ``power`` and ``power_centered`` (C, H, W) the mean |F x|^2 of the images and of the
    images minus ``mean``, ``variance`` (C,) the pixel variance, ``num_images``."""
    x = np.asarray(images, np.float64)
    n, h, w, c = x.shape
    mean = x.mean(axis=(0, 1, 2))
    power = np.zeros((c, h, w))
    centered = np.zeros((c, h, w))
    for chunk in np.array_split(x, max(1, n // 32)):
        chw = np.moveaxis(chunk, 3, 1)
        power += np.sum(np.abs(np.fft.fft2(chw, norm='ortho')) ** 2, axis=0)
        centered += np.sum(np.abs(np.fft.fft2(chw - mean[:, None, None], norm='ortho')) ** 2,
                           axis=0)
    centered /= n
    return {'mean': mean.astype(np.float32), 'power': (power / n).astype(np.float32),
            'power_centered': centered.astype(np.float32),
            'variance': centered.mean(axis=(1, 2)).astype(np.float32),
            'num_images': np.int64(n)}


def check_transform(transform: str) -> None:
    check_choice('sampling.pds.transform', transform, TRANSFORMS)


def check_alpha(alpha: float) -> None:
    if not isinstance(alpha, int | float) or not alpha > 1:
        raise ConfigError('sampling.pds.alpha', alpha, 'a number > 1')


def frequency_gain(f: np.ndarray, alpha: float, transform: str = 'normalized') -> np.ndarray:
    """R (C, H, W) from the frequency statistic."""
    check_alpha(alpha)
    check_transform(transform)
    f = np.asarray(f, np.float64)
    if transform == 'normalized':
        f = f / _positive_max(f, 'sampling.pds.freq_mask')
    return _finite_gain(alpha / (f + alpha - 1.0), 'sampling.pds.freq_mask')


def _positive_max(q: np.ndarray, field: str) -> float:
    """max(q), the normalisation of the 'normalized' transform; ConfigError unless > 0."""
    top = float(np.max(q))
    if not top > 0:
        raise ConfigError(field, f'a statistic with max {top:g}', 'a mask statistic with a '
                          'positive maximum (the normalized transform divides by it)')
    return top


def _finite_gain(gain: np.ndarray, field: str) -> np.ndarray:
    """The gain as float32; ConfigError unless every entry is finite and positive."""
    gain = gain.astype(np.float32)
    if not np.all(np.isfinite(gain) & (gain > 0)):
        raise ConfigError(field, 'its gains', 'a mask statistic whose gains are finite and '
                          'positive (this one has entries q <= 1 - alpha, or overflows)')
    return gain


def space_gain(s: np.ndarray, alpha: float, transform: str = 'normalized') -> np.ndarray:
    """D (C, H, W) from the space statistic."""
    check_alpha(alpha)
    check_transform(transform)
    s = np.asarray(s, np.float64)
    if transform == 'legacy':
        if np.any(s <= 0):
            raise ConfigError('sampling.pds.space_mask', 'legacy transform',
                              'a space statistic > 0 everywhere (the legacy gain is 1 / s)')
        return _finite_gain(1.0 / s, 'sampling.pds.space_mask')
    s = s / _positive_max(s, 'sampling.pds.space_mask')
    return _finite_gain(alpha / (s + alpha - 1.0), 'sampling.pds.space_mask')


def load_mask(path: str, field: str, shape_chw: tuple[int, int, int]) -> np.ndarray:
    """Read a reference mask ``.npy`` (C, H, W), numeric and finite, checked against the
    image shape (``pds.storage.readers.read_mask``); float32."""
    return readers.read_mask(path, field, shape_chw)


def save_mask(path: str, stat: np.ndarray) -> None:
    """Write a statistic in the reference format (float32 .npy, (C, H, W)), atomically."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(stat, np.float32))
    outputs.write_bytes(path, buf.getvalue())
