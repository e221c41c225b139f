"""LSUN-style 256x256 defaults (also used by CelebA-HQ/FFHQ 256 and FFHQ 1024)."""

import ml_collections

from configs.common import dataset_defaults


def get_default_configs() -> ml_collections.ConfigDict:
    config = dataset_defaults('LSUN', 256, sigma_max=378.0, num_scales=2000, snr=0.075,
                              dropout=0.0)
    training = config.training
    training.batch_size = 64
    training.n_iters = 2400001
    training.snapshot_freq_for_preemption = 5000
    return config
