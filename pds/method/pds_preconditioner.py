"""The PDS preconditioner M = C D (Ma et al. 2022, arXiv 2207.02196; the official
repository github.com/fudan-zvg/PDS), applied with real FFTs.

Registered as ``sampling.precondition='pds'`` and configured by ``sampling.pds``.

C = F^-1 diag(R) F is a filter in frequency (F the 2-D DFT over H and W, per channel) and
D = diag(d) a gain in pixel space. The sampler needs

    noise:  M z     = C (D z)
    drift:  M M^T g = C D^2 C g        (C is real and symmetric when R(k) = R(-k)).

For a real gain R, Re F^-1[R F x] = F^-1[R_sym F x] with R_sym(k) = (R(k) + R(-k)) / 2, so
symmetrising R once lets every product run as rfft2 / irfft2 on the half spectrum
(H, W // 2 + 1): exactly the reference's complex formulation, in half the work. With the
frequency gain alone, M M^T g = F^-1[R^2 F g] is a single rfft2 / irfft2 pair.

A gain that is identically 1 is dropped, so gain-1 masks reproduce the plain sampler bit for
bit. Arrays are NHWC; gains are stored channel-last.
"""

from __future__ import annotations

import numpy as np
from absl import logging
from flax import struct
from jax import numpy as jnp

from pds.method import masks
from pds.method.precondition import ImageSource, register_preconditioner
from pds.runtime.errors import ConfigError

Array = jnp.ndarray


@struct.dataclass
class PDSPreconditioner:
    """freq: (H, W // 2 + 1, C) symmetrised half-spectrum gain R, or None (gain 1).
    space: (H, W, C) pixel gain D, or None (gain 1)."""

    freq: Array | None = None
    space: Array | None = None

    def noise(self, z: Array) -> Array:
        """M z = C D z."""
        if self.space is not None:
            z = z * self.space
        if self.freq is not None:
            z = _filter(z, self.freq)
        return z

    def drift(self, g: Array) -> Array:
        """M M^T g = C D^2 C g."""
        if self.freq is None:
            return g if self.space is None else g * self.space**2
        if self.space is None:
            return _filter(g, self.freq**2)
        return _filter(_filter(g, self.freq) * self.space**2, self.freq)


def hermitian_symmetrize(r: np.ndarray) -> np.ndarray:
    """(R(k) + R(-k)) / 2 for a gain (..., H, W) in native FFT layout."""
    flipped = np.roll(np.flip(r, axis=(-2, -1)), shift=(1, 1), axis=(-2, -1))
    return 0.5 * (r + flipped)


def make_preconditioner(freq_gain: np.ndarray | None = None,
                        space_gain: np.ndarray | None = None) -> PDSPreconditioner:
    """Build from channel-first gains (C, H, W) as the reference stores them."""
    freq = space = None
    if freq_gain is not None and not np.all(np.asarray(freq_gain) == 1):
        r = hermitian_symmetrize(np.asarray(freq_gain, np.float64))
        w = r.shape[-1]
        freq = jnp.asarray(np.moveaxis(r[..., : w // 2 + 1], 0, -1), jnp.float32)
    if space_gain is not None and not np.all(np.asarray(space_gain) == 1):
        space = jnp.asarray(np.moveaxis(np.asarray(space_gain), 0, -1), jnp.float32)
    return PDSPreconditioner(freq=freq, space=space)


def _filter(x: Array, gain_half: Array) -> Array:
    """F^-1[R F x] over axes (1, 2) of an NHWC batch, R given on the half spectrum."""
    h, w = x.shape[1], x.shape[2]
    spec = jnp.fft.rfft2(x, axes=(1, 2))
    return jnp.fft.irfft2(spec * gain_half, s=(h, w), axes=(1, 2)).astype(x.dtype)


def pds_gains(config, image_shape: tuple[int, int, int], images: ImageSource
              ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Channel-first gains (R, D), each (C, H, W) or None, of ``sampling.pds``: for each of
    ``freq_mask`` and ``space_mask``, '' (gain 1), a reference ``.npy`` statistic, or 'stats'
    (the statistic of ``images(num_stat_images)``), through the alpha transform."""
    pds = config.sampling.pds
    masks.check_alpha(pds.alpha)
    masks.check_transform(pds.transform)
    h, w, c = image_shape
    gains = []
    data = None
    for field, stat_fn, gain_fn in (
            ('freq_mask', masks.frequency_statistic, masks.frequency_gain),
            ('space_mask', masks.space_statistic, masks.space_gain)):
        spec = pds[field]
        if spec == '':
            gains.append(None)
            continue
        if spec == 'stats':
            n = pds.num_stat_images
            if not isinstance(n, int) or n < 1:
                raise ConfigError('sampling.pds.num_stat_images', n, 'an integer >= 1')
            data = images(n) if data is None else data
            stat = stat_fn(data)
        else:
            stat = masks.load_mask(spec, f'sampling.pds.{field}', (c, h, w))
        gains.append(gain_fn(stat, pds.alpha, pds.transform))
    return gains[0], gains[1]


@register_preconditioner('pds')
def from_config(config, image_shape: tuple[int, int, int], images: ImageSource
                ) -> PDSPreconditioner:
    """M of ``sampling.pds``; both masks '' make M the identity, which is logged as a
    warning (a network config's masks start as '': ``--mode=stats`` writes them)."""
    freq, space = pds_gains(config, image_shape, images)
    if freq is None and space is None:
        logging.warning("sampling.precondition='pds' with sampling.pds.freq_mask='' and "
                        "space_mask='': M is the identity, PDS changes nothing (set "
                        "freq_mask to 'stats' or to --mode=stats's freq_mask.npy)")
    return make_preconditioner(freq, space)


# --- The reference's complex formulation, kept as the independent check and benchmark baseline.

def noise_complex(freq_gain_chw: np.ndarray, space_gain_chw: np.ndarray | None, z: Array) -> Array:
    """Re F^-1[R F[D z]] with full complex FFTs (two transforms), NHWC in and out."""
    r = jnp.moveaxis(jnp.asarray(freq_gain_chw), 0, -1)
    y = z if space_gain_chw is None else z * jnp.moveaxis(jnp.asarray(space_gain_chw), 0, -1)
    return jnp.real(jnp.fft.ifft2(r * jnp.fft.fft2(y, axes=(1, 2)), axes=(1, 2)))


def drift_complex(freq_gain_chw: np.ndarray, space_gain_chw: np.ndarray | None, g: Array) -> Array:
    """Re F^-1[R F[D^2 F^-1[R F g]]] with full complex FFTs (four transforms), NHWC."""
    r = jnp.moveaxis(jnp.asarray(freq_gain_chw), 0, -1)
    d2 = 1.0 if space_gain_chw is None else jnp.moveaxis(jnp.asarray(space_gain_chw), 0, -1) ** 2
    inner = jnp.fft.ifft2(r * jnp.fft.fft2(g, axes=(1, 2)), axes=(1, 2))
    return jnp.real(jnp.fft.ifft2(r * jnp.fft.fft2(d2 * inner, axes=(1, 2)), axes=(1, 2)))
