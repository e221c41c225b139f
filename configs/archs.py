"""Architecture blocks shared by the network configs (score_sde's ``config.model`` fields).

Each function fills ``config.model`` in place with one family's knobs; the experiment files call
them with the values that differ. Field meanings are those of :class:`models.ncsnpp.NCSNpp`
and :class:`models.ddpm.DDPM`.
"""

from collections.abc import Sequence

import ml_collections


def ncsnpp(model: ml_collections.ConfigDict, *, nf: int = 128,
           ch_mult: Sequence[int] = (1, 2, 2, 2), num_res_blocks: int = 4,
           progressive: str = 'none', progressive_input: str = 'residual',
           fir: bool = True, embedding_type: str = 'fourier', scale_by_sigma: bool = True,
           ema_rate: float = 0.999) -> None:
    """NCSN++ (VE: FIR, BigGAN blocks, scale_by_sigma) or DDPM++ (VP: no FIR, positional)."""
    model.name = 'ncsnpp'
    model.scale_by_sigma = scale_by_sigma
    model.ema_rate = ema_rate
    model.normalization = 'GroupNorm'
    model.nonlinearity = 'swish'
    model.nf = nf
    model.ch_mult = tuple(ch_mult)
    model.num_res_blocks = num_res_blocks
    model.attn_resolutions = (16,)
    model.resamp_with_conv = True
    model.conditional = True
    model.fir = fir
    model.fir_kernel = [1, 3, 3, 1]
    model.skip_rescale = True
    model.resblock_type = 'biggan'
    model.progressive = progressive
    model.progressive_input = progressive_input
    model.progressive_combine = 'sum'
    model.attention_type = 'ddpm'
    model.init_scale = 0.0
    model.fourier_scale = 16
    model.embedding_type = embedding_type
    model.conv_size = 3


def ddpmpp(model: ml_collections.ConfigDict, *, num_res_blocks: int = 4) -> None:
    """DDPM++ for VP/subVP CIFAR-10: NCSN++ without FIR or input pyramid, positional time."""
    ncsnpp(model, num_res_blocks=num_res_blocks, progressive='none', progressive_input='none',
           fir=False, embedding_type='positional', scale_by_sigma=False, ema_rate=0.9999)


def ddpm(model: ml_collections.ConfigDict) -> None:
    """The original DDPM CIFAR-10 U-Net (35,218,947 parameters in Flax)."""
    model.name = 'ddpm'
    model.scale_by_sigma = False
    model.ema_rate = 0.9999
    model.normalization = 'GroupNorm'
    model.nonlinearity = 'swish'
    model.nf = 128
    model.ch_mult = (1, 2, 2, 2)
    model.num_res_blocks = 2
    model.attn_resolutions = (16,)
    model.resamp_with_conv = True
    model.conditional = True


def vp_sampling(sampling: ml_collections.ConfigDict, continuous: bool) -> None:
    """VP/subVP sampler: Euler-Maruyama (continuous) or ancestral (discrete), no corrector."""
    sampling.method = 'pc'
    sampling.predictor = 'euler_maruyama' if continuous else 'ancestral_sampling'
    sampling.corrector = 'none'


def ve_sampling(sampling: ml_collections.ConfigDict) -> None:
    """VE sampler: reverse-diffusion predictor + Langevin corrector (PC)."""
    sampling.method = 'pc'
    sampling.predictor = 'reverse_diffusion'
    sampling.corrector = 'langevin'
