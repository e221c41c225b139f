"""NCSNv2 (Song & Ermon 2020) RefineNet score networks: ``ncsnv2_64``, ``_128``, ``_256``.

Input ``x`` (B, H, W, C), ``labels`` (B,) integer indices into the sigma ladder (used only when
``scale_by_sigma``: output / sigmas[labels]). The network itself is unconditional.

Each variant is a table: backbone stages ``(width multiple, dilation, downsample)``, each stage
being two ResidualBlocks (the first one 'down' when ``downsample``) whose output is a skip
``layer``; then a chain of RefineBlocks from the deepest skip upwards with the listed widths.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from models import layers, normalization
from models.refinenet import RefineBlock, ResidualBlock
from models.registry import register_model

# (width multiple of nf, dilation, downsample) per backbone stage.
_Stage = tuple[int, int, bool]


def _ncsnv2_forward(module: nn.Module, x: jax.Array, labels: jax.Array,
                    stages: Sequence[_Stage], refine_widths: Sequence[int]) -> jax.Array:
    """Shared body of the NCSNv2 variants; must be called from a compact ``__call__``."""
    config = module.config
    nf = int(config.model.nf)
    act = layers.get_act(config)
    dtype = layers.get_dtype(config)
    norm = normalization.get_normalization(config, dtype=dtype)
    interpolation = config.model.get('interpolation', 'bilinear')

    h = x.astype(jnp.float32)
    if not config.data.centered:
        h = 2.0 * h - 1.0
    h = layers.ncsn_conv(h.astype(dtype), nf, dtype=dtype)

    skips = []
    for mult, dilation, down in stages:
        h = ResidualBlock(mult * nf, normalization=norm, resample='down' if down else None,
                          act=act, dilation=dilation, dtype=dtype)(h)
        h = ResidualBlock(mult * nf, normalization=norm, act=act, dilation=dilation,
                          dtype=dtype)(h)
        skips.append(h)

    ref = None
    last = len(skips) - 1
    for i, (skip, width) in enumerate(zip(reversed(skips), refine_widths, strict=True)):
        inputs = [skip] if ref is None else [skip, ref]
        ref = RefineBlock(skip.shape[1:3], width * nf, act=act, interpolation=interpolation,
                          start=ref is None, end=i == last, dtype=dtype)(inputs)

    h = act(norm()(ref))
    h = layers.ncsn_conv(h, x.shape[-1], dtype=dtype).astype(jnp.float32)
    if config.model.scale_by_sigma:
        sigmas = layers.get_sigmas(config)[labels.astype(jnp.int32)]
        h = h / sigmas.reshape((-1,) + (1,) * (h.ndim - 1))
    return h


@register_model('ncsnv2_64')
class NCSNv2(nn.Module):
    """NCSNv2 for images below 96px: 4 stages (nf, 2nf, 2nf dilated 2, 2nf dilated 4)."""

    config: ml_collections.ConfigDict

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array, train: bool = False) -> jax.Array:
        return _ncsnv2_forward(self, x, labels,
                               stages=((1, 1, False), (2, 1, True), (2, 2, True), (2, 4, True)),
                               refine_widths=(2, 2, 2, 1))


@register_model('ncsnv2_128')
class NCSNv2_128(nn.Module):  # noqa: N801  (score_sde's class name)
    """NCSNv2 for 96-128px images: 5 stages."""

    config: ml_collections.ConfigDict

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array, train: bool = False) -> jax.Array:
        return _ncsnv2_forward(self, x, labels,
                               stages=((1, 1, False), (2, 1, True), (2, 1, True), (4, 2, True),
                                       (4, 4, True)),
                               refine_widths=(4, 2, 2, 1, 1))


@register_model('ncsnv2_256')
class NCSNv2_256(nn.Module):  # noqa: N801  (score_sde's class name)
    """NCSNv2 for 128-256px images: 6 stages."""

    config: ml_collections.ConfigDict

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array, train: bool = False) -> jax.Array:
        return _ncsnv2_forward(self, x, labels,
                               stages=((1, 1, False), (2, 1, True), (2, 1, True), (2, 1, True),
                                       (4, 2, True), (4, 4, True)),
                               refine_widths=(4, 2, 2, 2, 1, 1))
