"""VE SDE, NCSN++ on CIFAR-10, continuous training (62.8M parameters)."""

import ml_collections

from configs import archs
from configs.default_cifar10_configs import get_default_configs


def get_config() -> ml_collections.ConfigDict:
    config = get_default_configs()
    config.training.sde = 'vesde'
    config.training.continuous = True
    archs.ve_sampling(config.sampling)
    archs.ncsnpp(config.model)
    return config
