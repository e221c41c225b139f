"""NCSN++ / DDPM++ (Song et al. 2021): one U-Net driven by ``config.model`` knobs.

Input ``x`` (B, H, W, C) NHWC and ``labels`` (B,): the noise level sigma for the Fourier
embedding (continuous VE), or a time value / ladder index for the positional embedding
(t * 999 for VP, the integer sigma index for discrete VE). Output (B, H, W, C), float32.

Layout (resolution levels l = 0..L-1 with width nf * ch_mult[l]):
  embed -> Conv_0 -> per level: num_res_blocks blocks (+ attention at attn_resolutions), then a
  down-sampling step (plain Downsample for 'ddpm' blocks, a down BigGAN block otherwise),
  optionally merged with a down-sampled copy of the input (progressive_input) ->
  middle (block, attention, block) -> per level in reverse: num_res_blocks + 1 blocks on
  [h, skip] concatenations (+ attention), optional output pyramid (progressive), up-sampling ->
  GroupNorm, act, 3x3 conv (or the output pyramid) -> optional division by sigma.

Sub-modules are created in the order score_sde creates them, so Flax's automatic names
(GaussianFourierProjection_0, Dense_0, Conv_0, ResnetBlockBigGANpp_0, AttnBlockpp_0,
Downsample_0, Combine_0, Upsample_0, GroupNorm_0, ...) match released checkpoints.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from models import layers
from models.initializers import default_init
from models.registry import register_model

_PROGRESSIVE = ('none', 'output_skip', 'residual')
_PROGRESSIVE_INPUT = ('none', 'input_skip', 'residual')


@dataclasses.dataclass(frozen=True)
class NCSNppSpec:
    """The architecture knobs of NCSN++ read from ``config.model`` / ``config.data``."""

    nf: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]
    dropout: float
    resamp_with_conv: bool
    conditional: bool
    fir: bool
    fir_kernel: tuple[int, ...]
    skip_rescale: bool
    resblock_type: str
    progressive: str
    progressive_input: str
    progressive_combine: str
    embedding_type: str
    fourier_scale: float
    init_scale: float
    scale_by_sigma: bool
    centered: bool
    continuous: bool

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> NCSNppSpec:
        m = config.model
        spec = cls(
            nf=int(m.nf),
            ch_mult=tuple(int(c) for c in m.ch_mult),
            num_res_blocks=int(m.num_res_blocks),
            attn_resolutions=tuple(int(r) for r in m.attn_resolutions),
            dropout=float(m.dropout),
            resamp_with_conv=bool(m.resamp_with_conv),
            conditional=bool(m.conditional),
            fir=bool(m.fir),
            fir_kernel=tuple(int(k) for k in m.fir_kernel),
            skip_rescale=bool(m.skip_rescale),
            resblock_type=m.resblock_type.lower(),
            progressive=m.progressive.lower(),
            progressive_input=m.progressive_input.lower(),
            progressive_combine=m.progressive_combine.lower(),
            embedding_type=m.embedding_type.lower(),
            fourier_scale=float(m.get('fourier_scale', 16.0)),
            init_scale=float(m.init_scale),
            scale_by_sigma=bool(m.scale_by_sigma),
            centered=bool(config.data.centered),
            continuous=bool(config.training.continuous),
        )
        spec.validate()
        return spec

    def validate(self) -> None:
        if self.progressive not in _PROGRESSIVE:
            raise ValueError(f'progressive must be one of {_PROGRESSIVE}')
        if self.progressive_input not in _PROGRESSIVE_INPUT:
            raise ValueError(f'progressive_input must be one of {_PROGRESSIVE_INPUT}')
        if self.embedding_type not in ('fourier', 'positional'):
            raise ValueError(f'embedding type {self.embedding_type!r} unknown')
        if self.resblock_type not in ('ddpm', 'biggan'):
            raise ValueError(f'resblock type {self.resblock_type!r} unrecognized')
        if self.progressive_combine not in ('sum', 'cat'):
            raise ValueError(f'combine method {self.progressive_combine!r} unrecognized')
        if self.embedding_type == 'fourier' and not self.continuous:
            raise ValueError('Fourier features are only used for continuous training')


def _merge(a: jax.Array, b: jax.Array, skip_rescale: bool) -> jax.Array:
    return layers.residual_sum(a, b, skip_rescale)


@register_model('ncsnpp')
class NCSNpp(nn.Module):
    """NCSN++ (VE, Fourier embedding, FIR) and DDPM++ (VP/subVP, positional embedding)."""

    config: ml_collections.ConfigDict

    # ------------------------------------------------------------------ pieces

    def _embed(self, spec: NCSNppSpec, labels: jax.Array, act: layers.Activation,
               dtype: layers.Dtype) -> tuple[jax.Array | None, Callable[[], jax.Array]]:
        """Time embedding (B, 4 nf) or None, and a thunk giving the sigmas used for scaling."""
        if spec.embedding_type == 'fourier':
            emb = layers.GaussianFourierProjection(embedding_size=spec.nf,
                                                   scale=spec.fourier_scale)(jnp.log(labels))
            sigmas_fn = lambda: labels.astype(jnp.float32)
        else:
            emb = layers.timestep_embedding(labels, spec.nf)
            sigmas_fn = lambda: layers.get_sigmas(self.config)[labels.astype(jnp.int32)]
        if not spec.conditional:
            return None, sigmas_fn
        temb = nn.Dense(spec.nf * 4, kernel_init=default_init(), dtype=dtype)(emb)
        temb = nn.Dense(spec.nf * 4, kernel_init=default_init(), dtype=dtype)(act(temb))
        return temb, sigmas_fn

    def _output_conv(self, spec: NCSNppSpec, h: jax.Array, out_ch: int,
                     act: layers.Activation, dtype: layers.Dtype,
                     init_scale: float) -> jax.Array:
        """3x3 conv of act(GroupNorm(h)) to ``out_ch`` channels (a pyramid/output head)."""
        return layers.conv3x3(act(layers.group_norm(h, dtype)), out_ch,
                              init_scale=init_scale, dtype=dtype)

    # ------------------------------------------------------------------ network

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array, train: bool = False) -> jax.Array:
        spec = NCSNppSpec.from_config(self.config)
        act = layers.get_act(self.config)
        dtype = layers.get_dtype(self.config)
        out_channels = x.shape[-1]

        temb, sigmas_fn = self._embed(spec, labels, act, dtype)

        # Module factories; names (class names) decide the parameter paths.
        attn = functools.partial(layers.AttnBlockpp, init_scale=spec.init_scale,
                                 skip_rescale=spec.skip_rescale, dtype=dtype)
        resample = dict(fir=spec.fir, fir_kernel=spec.fir_kernel, dtype=dtype)
        upsample = functools.partial(layers.Upsample, with_conv=spec.resamp_with_conv,
                                     **resample)
        downsample = functools.partial(layers.Downsample, with_conv=spec.resamp_with_conv,
                                       **resample)
        pyramid_up = functools.partial(layers.Upsample,
                                       with_conv=spec.progressive == 'residual', **resample)
        pyramid_down = functools.partial(layers.Downsample,
                                         with_conv=spec.progressive_input == 'residual',
                                         **resample)
        combine = functools.partial(layers.Combine, method=spec.progressive_combine,
                                    dtype=dtype)
        if spec.resblock_type == 'ddpm':
            block = functools.partial(layers.ResnetBlockDDPMpp, act=act, dropout=spec.dropout,
                                      init_scale=spec.init_scale,
                                      skip_rescale=spec.skip_rescale, dtype=dtype)
        else:
            block = functools.partial(layers.ResnetBlockBigGANpp, act=act,
                                      dropout=spec.dropout, fir=spec.fir,
                                      fir_kernel=spec.fir_kernel, init_scale=spec.init_scale,
                                      skip_rescale=spec.skip_rescale, dtype=dtype)

        x = x.astype(jnp.float32)
        if not spec.centered:
            x = 2.0 * x - 1.0  # data in [0, 1] -> [-1, 1]
        x = x.astype(dtype)

        # ---------------- encoder
        input_pyramid = x
        skips = [layers.conv3x3(x, spec.nf, dtype=dtype)]
        levels = len(spec.ch_mult)
        for level, mult in enumerate(spec.ch_mult):
            for _ in range(spec.num_res_blocks):
                h = block(out_ch=spec.nf * mult)(skips[-1], temb, train)
                if h.shape[1] in spec.attn_resolutions:
                    h = attn()(h)
                skips.append(h)
            if level == levels - 1:
                continue
            if spec.resblock_type == 'ddpm':
                h = downsample()(skips[-1])
            else:
                h = block(down=True)(skips[-1], temb, train)
            if spec.progressive_input == 'input_skip':
                input_pyramid = pyramid_down()(input_pyramid)
                h = combine()(input_pyramid, h)
            elif spec.progressive_input == 'residual':
                input_pyramid = pyramid_down(out_ch=h.shape[-1])(input_pyramid)
                input_pyramid = _merge(input_pyramid, h, spec.skip_rescale)
                h = input_pyramid
            skips.append(h)

        # ---------------- middle
        h = skips[-1]
        h = block()(h, temb, train)
        h = attn()(h)
        h = block()(h, temb, train)

        # ---------------- decoder
        pyramid = None
        for level in reversed(range(levels)):
            width = spec.nf * spec.ch_mult[level]
            for _ in range(spec.num_res_blocks + 1):
                h = block(out_ch=width)(jnp.concatenate([h, skips.pop()], axis=-1), temb, train)
            if h.shape[1] in spec.attn_resolutions:
                h = attn()(h)

            if spec.progressive == 'output_skip':
                if level < levels - 1:
                    pyramid = pyramid_up()(pyramid)
                head = self._output_conv(spec, h, out_channels, act, dtype, spec.init_scale)
                pyramid = head if pyramid is None else pyramid + head
            elif spec.progressive == 'residual':
                if level == levels - 1:
                    pyramid = self._output_conv(spec, h, h.shape[-1], act, dtype, 1.0)
                else:
                    pyramid = pyramid_up(out_ch=h.shape[-1])(pyramid)
                    pyramid = _merge(pyramid, h, spec.skip_rescale)
                    h = pyramid

            if level != 0:
                if spec.resblock_type == 'ddpm':
                    h = upsample()(h)
                else:
                    h = block(up=True)(h, temb, train)

        if skips:
            raise AssertionError('unconsumed skip connections')

        # ---------------- output
        if spec.progressive == 'output_skip':
            h = pyramid
        else:
            h = layers.conv3x3(act(layers.group_norm(h, dtype)), out_channels,
                               init_scale=spec.init_scale, dtype=dtype)
        h = h.astype(jnp.float32)
        if spec.scale_by_sigma:
            h = h / sigmas_fn().reshape((-1,) + (1,) * (h.ndim - 1))
        return h

