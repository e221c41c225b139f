"""The DDPM U-Net (Ho et al. 2020) as score_sde's ``ddpm`` model.

Input ``x`` (B, H, W, C), ``labels`` (B,) time steps (t * 999 or the discrete index), sinusoidal
embedding -> Dense_0 -> act -> Dense_1 (width 4 nf). Encoder: Conv_0, per level
``num_res_blocks`` ResnetBlockDDPM (+ AttnBlock at attn_resolutions), Downsample between levels;
middle block-attention-block; decoder with ``num_res_blocks + 1`` blocks per level on skip
concatenations, Upsample between levels; GroupNorm, act, zero-init 3x3 conv. Output float32.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from models import layers, normalization
from models.initializers import default_init
from models.registry import register_model


@register_model('ddpm')
class DDPM(nn.Module):
    """DDPM architecture (nearest/stride-2 conv resampling, no FIR, no skip rescaling)."""

    config: ml_collections.ConfigDict

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array, train: bool = False) -> jax.Array:
        m = self.config.model
        act = layers.get_act(self.config)
        dtype = layers.get_dtype(self.config)
        normalize = normalization.get_normalization(self.config, dtype=dtype)
        nf = int(m.nf)
        ch_mult = tuple(m.ch_mult)
        attn_resolutions = tuple(m.attn_resolutions)

        attn = functools.partial(layers.AttnBlock, normalize=normalize, dtype=dtype)
        block = functools.partial(layers.ResnetBlockDDPM, act=act, normalize=normalize,
                                  dropout=float(m.dropout), dtype=dtype)
        upsample = functools.partial(layers.Upsample, with_conv=bool(m.resamp_with_conv),
                                     dtype=dtype)
        downsample = functools.partial(layers.Downsample, with_conv=bool(m.resamp_with_conv),
                                       dtype=dtype)

        temb = None
        if m.conditional:
            temb = layers.timestep_embedding(labels, nf)
            temb = nn.Dense(nf * 4, kernel_init=default_init(), dtype=dtype)(temb)
            temb = nn.Dense(nf * 4, kernel_init=default_init(), dtype=dtype)(act(temb))

        h = x.astype(jnp.float32)
        if not self.config.data.centered:
            h = 2.0 * h - 1.0
        h = h.astype(dtype)

        skips = [layers.conv3x3(h, nf, dtype=dtype)]
        for level, mult in enumerate(ch_mult):
            for _ in range(m.num_res_blocks):
                h = block(out_ch=nf * mult)(skips[-1], temb, train)
                if h.shape[1] in attn_resolutions:
                    h = attn()(h)
                skips.append(h)
            if level != len(ch_mult) - 1:
                skips.append(downsample()(skips[-1]))

        h = block()(skips[-1], temb, train)
        h = attn()(h)
        h = block()(h, temb, train)

        for level in reversed(range(len(ch_mult))):
            for _ in range(m.num_res_blocks + 1):
                h = block(out_ch=nf * ch_mult[level])(
                    jnp.concatenate([h, skips.pop()], axis=-1), temb, train)
            if h.shape[1] in attn_resolutions:
                h = attn()(h)
            if level != 0:
                h = upsample()(h)
        if skips:
            raise AssertionError('unconsumed skip connections')

        h = act(normalize()(h))
        h = layers.conv3x3(h, x.shape[-1], init_scale=0.0, dtype=dtype).astype(jnp.float32)
        if m.scale_by_sigma:
            sigmas = layers.get_sigmas(self.config)[labels.astype(jnp.int32)]
            h = h / sigmas.reshape((-1,) + (1,) * (h.ndim - 1))
        return h
