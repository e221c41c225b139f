"""VE SDE, NCSN++ on LSUN church_outdoor 256, continuous training (sigma_max 380)."""

import ml_collections

from configs import archs
from configs.default_lsun_configs import get_default_configs


def get_config() -> ml_collections.ConfigDict:
    config = get_default_configs()
    config.training.sde = 'vesde'
    config.training.continuous = True
    archs.ve_sampling(config.sampling)
    config.data.category = 'church_outdoor'
    config.model.sigma_max = 380.0
    archs.ncsnpp(config.model, ch_mult=(1, 1, 2, 2, 2, 2, 2), num_res_blocks=2,
                 progressive='output_skip', progressive_input='input_skip')
    return config
