"""VE SDE, deep NCSN++ (8 blocks per level) on CIFAR-10, continuous training."""

import ml_collections

from configs import archs
from configs.default_cifar10_configs import get_default_configs


def get_config() -> ml_collections.ConfigDict:
    config = get_default_configs()
    config.training.sde = 'vesde'
    config.training.continuous = True
    config.training.n_iters = 950001
    archs.ve_sampling(config.sampling)
    archs.ncsnpp(config.model, num_res_blocks=8)
    return config
