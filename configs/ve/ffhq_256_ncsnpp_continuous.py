"""VE SDE, NCSN++ on FFHQ 256, continuous training (sigma_max 348)."""

import ml_collections

from configs import archs
from configs.default_lsun_configs import get_default_configs


def get_config() -> ml_collections.ConfigDict:
    config = get_default_configs()
    config.training.sde = 'vesde'
    config.training.continuous = True
    archs.ve_sampling(config.sampling)
    config.data.dataset = 'FFHQ'
    config.data.image_size = 256
    config.data.tfrecords_path = ''  # plug in the path to the FFHQ r08 tfrecords
    config.model.sigma_max = 348.0
    archs.ncsnpp(config.model, ch_mult=(1, 1, 2, 2, 2, 2, 2), num_res_blocks=2,
                 progressive='output_skip', progressive_input='input_skip')
    return config
