"""Photograph patches (``data.dataset = 'photos'``, pds/data/photos.py): the dataset defaults.

RGB patches of data.image_size cut at native resolution (``photo_downscale = 1``) from the seven
colour photographs in scikit-image's wheel, each photograph drawn with equal probability, flipped
horizontally in training; reference sets (split 'eval', and 'eval_b' for the data floor) from
held-out cells at least ``photo_gap`` pixels from every training patch. ``photo_holdout =
'region'`` is the generalisation check (a held-out strip), never the floor.

sigma_max follows score_sde's rule (about the largest distance between two training examples):
the largest of the pairwise distances among 2000 training patches (seed 0) is 26.8 at 16x16 and
51.1 at 32x32 (99.9th percentile 24.4 / 47.1), so 30 and 60.
"""

import ml_collections

from configs import archs
from configs.common import dataset_defaults
from pds.data.photos import PHOTOS

SIGMA_MAX = {16: 30.0, 32: 60.0}


def get_default_configs(image_size: int) -> ml_collections.ConfigDict:
    config = dataset_defaults('photos', image_size, sigma_max=SIGMA_MAX[image_size],
                              num_scales=1000, snr=0.16, dropout=0.0)
    data = config.data
    data.random_flip = True
    data.photos = PHOTOS
    data.photo_downscale = 1
    data.photo_holdout = 'blocks'
    data.photo_gap = image_size // 4
    data.photo_weighting = 'equal'
    # --mode=stats: the PDS masks from this many training patches
    config.sampling.pds.num_stat_images = 2000
    config.eval.num_samples = 1024
    config.eval.batch_size = 64
    return config


def cpu_ncsnpp(config: ml_collections.ConfigDict, ch_mult: tuple[int, ...], nf: int = 32
               ) -> ml_collections.ConfigDict:
    """A CPU-sized continuous VE NCSN++ (no attention, no FIR, Fourier time embedding) on
    ``config``, ``ch_mult`` giving its resolutions, with the training settings the committed
    photo network was trained with (batch 32, Adam at 1e-3 after 200 warm-up steps, EMA
    0.999)."""
    config.training.sde = 'vesde'
    config.training.continuous = True
    archs.ve_sampling(config.sampling)
    archs.ncsnpp(config.model, nf=nf, ch_mult=ch_mult, num_res_blocks=1, fir=False,
                 embedding_type='fourier', ema_rate=0.999)
    config.model.attn_resolutions = ()
    training = config.training
    training.batch_size = 32
    training.n_jitted_steps = 10
    training.log_freq = 100
    training.eval_freq = 1000
    training.snapshot_freq = 4000
    training.snapshot_freq_for_preemption = 500
    training.snapshot_sampling = False
    config.optim.lr = 1e-3
    config.optim.warmup = 200
    return config
