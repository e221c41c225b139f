"""Gaussian field at 256 x 256 with the FFHQ-256 NCSN++ VE schedule (sigma 0.01 -> 348,
2000 levels, snr 0.075). The README's main job benchmarks it."""

from configs.analytic.common import get_analytic_config


def get_config():
    config = get_analytic_config(image_size=256, sigma_max=348.0, num_scales=2000, snr=0.075)
    config.sampling.speed_up = 30.0  # 66 iterations, the paper's FFHQ setting
    config.eval.batch_size = 8
    config.eval.num_samples = 8
    config.bench.num_samples = 64  # per spot check, in rounds of 16
    config.bench.batch_size = 16
    return config
