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
import os

import numpy as np

from pds.runtime.errors import ConfigError, check_choice
from pds.storage import outputs

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
        f = f / np.max(f)
    return (alpha / (f + alpha - 1.0)).astype(np.float32)


def space_gain(s: np.ndarray, alpha: float, transform: str = 'normalized') -> np.ndarray:
    """D (C, H, W) from the space statistic."""
    check_alpha(alpha)
    check_transform(transform)
    s = np.asarray(s, np.float64)
    if transform == 'legacy':
        if np.any(s <= 0):
            raise ConfigError('sampling.pds.space_mask', 'legacy transform',
                              'a space statistic > 0 everywhere (the legacy gain is 1 / s)')
        return (1.0 / s).astype(np.float32)
    return (alpha / (s / np.max(s) + alpha - 1.0)).astype(np.float32)


def load_mask(path: str, field: str, shape_chw: tuple[int, int, int]) -> np.ndarray:
    """Read a reference mask ``.npy`` (C, H, W) and check it against the image shape."""
    if not os.path.isfile(path):
        raise ConfigError(field, path, 'an existing .npy file of shape (C, H, W), '
                          "'' for gain 1, or 'stats'")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ConfigError(field, path, f'a readable .npy array ({err})') from None
    if arr.shape != tuple(shape_chw):
        raise ConfigError(field, path, f'a mask of shape (C, H, W) = {tuple(shape_chw)} for '
                          f'this image size, got {arr.shape}')
    if not np.all(np.isfinite(arr)):
        raise ConfigError(field, path, 'finite values only')
    return arr.astype(np.float32)


def save_mask(path: str, stat: np.ndarray) -> None:
    """Write a statistic in the reference format (float32 .npy, (C, H, W)), atomically."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(stat, np.float32))
    outputs.write_bytes(path, buf.getvalue())
