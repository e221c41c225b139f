"""CIFAR-10 (32x32) defaults: score_sde's CIFAR-10 values on top of the shared base."""

import ml_collections

from configs.common import dataset_defaults


def get_default_configs() -> ml_collections.ConfigDict:
    config = dataset_defaults('CIFAR10', 32, sigma_max=50.0, num_scales=1000, snr=0.16,
                              dropout=0.1)
    return config
