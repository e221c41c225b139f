"""VP SDE, DDPM++ on CIFAR-10, discrete (DDPM) training."""

import ml_collections

from configs import archs
from configs.default_cifar10_configs import get_default_configs


def get_config() -> ml_collections.ConfigDict:
    config = get_default_configs()
    config.training.sde = 'vpsde'
    config.training.continuous = False
    config.training.reduce_mean = True
    archs.vp_sampling(config.sampling, continuous=False)
    config.data.centered = True
    archs.ddpmpp(config.model)
    return config
