"""CIFAR-10 (32x32) defaults: score_sde's CIFAR-10 values on top of the shared base."""

import ml_collections

from configs.common import get_base_config


def get_default_configs() -> ml_collections.ConfigDict:
    config = get_base_config()
    config.sampling.snr = 0.16
    # Network configs: no dataset is reachable offline, so the PDS mask defaults to gain 1.
    config.sampling.pds.freq_mask = ''

    data = config.data
    data.dataset = 'CIFAR10'
    data.image_size = 32
    data.random_flip = True
    data.centered = False
    data.uniform_dequantization = False
    data.num_channels = 3

    model = config.model
    model.sigma_min = 0.01
    model.sigma_max = 50.0
    model.num_scales = 1000
    model.dropout = 0.1
    return config
