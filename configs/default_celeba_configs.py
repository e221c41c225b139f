"""CelebA (64x64) defaults: score_sde's CelebA values on top of the shared base."""

import ml_collections

from configs.common import dataset_defaults


def get_default_configs() -> ml_collections.ConfigDict:
    config = dataset_defaults('CELEBA', 64, sigma_max=90.0, num_scales=1000, snr=0.17,
                              dropout=0.1)
    return config
