"""Gaussian field at 1024 x 1024 with the FFHQ-1024 NCSN++ VE schedule (sigma 0.01 -> 1348,
2000 levels, snr 0.15)."""

from configs.analytic.common import get_analytic_config


def get_config():
    config = get_analytic_config(image_size=1024, sigma_max=1348.0, num_scales=2000, snr=0.15)
    config.sampling.speed_up = 30.0  # 66 iterations
    config.eval.batch_size = 2
    config.eval.num_samples = 2
    config.bench.num_samples = 2
    config.bench.batch_size = 2
    return config
