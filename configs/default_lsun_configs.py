"""LSUN-style 256x256 defaults (also used by CelebA-HQ/FFHQ 256 and FFHQ 1024)."""

import ml_collections

from configs.common import get_base_config


def get_default_configs() -> ml_collections.ConfigDict:
    config = get_base_config()
    training = config.training
    training.batch_size = 64
    training.n_iters = 2400001
    training.snapshot_freq_for_preemption = 5000

    config.sampling.snr = 0.075
    config.sampling.pds.freq_mask = ''

    data = config.data
    data.dataset = 'LSUN'
    data.image_size = 256
    data.random_flip = True
    data.centered = False
    data.uniform_dequantization = False
    data.num_channels = 3

    model = config.model
    model.sigma_min = 0.01
    model.sigma_max = 378.0
    model.num_scales = 2000
    model.dropout = 0.0
    return config
