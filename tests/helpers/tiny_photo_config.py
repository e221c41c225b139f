"""``--config`` file of the data-bench tests: configs/photo/photos_16.py with a one-resolution
nf=8 network, freshly initialised, and smoke-sized bench and tune settings."""

from configs.photo.photos_16 import get_config as photo_config


def get_config():
    config = photo_config()
    model = config.model
    model.nf, model.ch_mult, model.num_res_blocks = 8, (1,), 0
    config.sampling.allow_random_init = True
    config.sampling.pds.num_stat_images = 16
    b = config.bench
    b.samplers, b.nfe = ('pc', 'dpm_solver_2m'), (2, 4)
    b.num_samples = b.batch_size = 20
    b.converged_steps, b.ode_reference_rtol = 2, 0.1
    b.moment_images, b.memorisation_images = 64, 32
    t = config.tune
    t.steps, t.alphas, t.num_samples, t.batch_size = (2,), (2.0, 5.0), 20, 20
    return config
