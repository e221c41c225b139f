"""VE SDE, NCSN++ on FFHQ 1024, continuous training (105.8M parameters, sigma_max 1348).

Upstream's JAX file is standalone, imports torch (for ``config.device``) and lacks
``training.n_jitted_steps`` and most ``eval`` fields; here it builds on the 256 defaults, so
every shared field exists, and has no torch dependency.
"""

import ml_collections

from configs import archs
from configs.default_lsun_configs import get_default_configs


def get_config() -> ml_collections.ConfigDict:
    config = get_default_configs()
    training = config.training
    training.sde = 'vesde'
    training.continuous = True
    training.batch_size = 8
    training.n_iters = 2400001
    training.snapshot_freq_for_preemption = 5000
    training.reduce_mean = True

    sampling = config.sampling
    archs.ve_sampling(sampling)
    sampling.snr = 0.15

    config.eval.batch_size = 8  # 1024x1024 samples: keep the sampling batch small

    data = config.data
    data.dataset = 'FFHQ'
    data.image_size = 1024
    data.tfrecords_path = ''  # plug in the path to the FFHQ r10 tfrecords

    model = config.model
    model.sigma_min = 0.01
    model.sigma_max = 1348.0
    model.num_scales = 2000
    model.dropout = 0.0
    archs.ncsnpp(model, nf=16, ch_mult=(1, 2, 4, 8, 16, 32, 32, 32), num_res_blocks=1,
                 progressive='output_skip', progressive_input='input_skip', ema_rate=0.9999)
    return config
