"""VE SDE, NCSN++ on CIFAR-10, discrete (SMLD ladder) training: positional embedding."""

import ml_collections

from configs import archs
from configs.default_cifar10_configs import get_default_configs


def get_config() -> ml_collections.ConfigDict:
    config = get_default_configs()
    config.training.sde = 'vesde'
    config.training.continuous = False
    archs.ve_sampling(config.sampling)
    archs.ncsnpp(config.model, embedding_type='positional')
    return config
