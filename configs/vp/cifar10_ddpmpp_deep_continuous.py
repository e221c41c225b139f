"""VP SDE, deep DDPM++ (8 blocks per level) on CIFAR-10, continuous training."""

import ml_collections

from configs import archs
from configs.default_cifar10_configs import get_default_configs


def get_config() -> ml_collections.ConfigDict:
    config = get_default_configs()
    config.training.sde = 'vpsde'
    config.training.continuous = True
    config.training.reduce_mean = True
    config.training.n_iters = 950001
    archs.vp_sampling(config.sampling, continuous=True)
    config.data.centered = True
    archs.ddpmpp(config.model, num_res_blocks=8)
    return config
