"""Gaussian field at CIFAR-10 scale with the CIFAR-10 NCSN++ VE schedule (sigma 0.01 -> 50,
1000 levels, snr 0.16)."""

from configs.analytic.common import get_analytic_config


def get_config():
    config = get_analytic_config(image_size=32, sigma_max=50.0, num_scales=1000, snr=0.16)
    config.sampling.speed_up = 10.0  # 100 iterations
    config.eval.batch_size = 64
    config.eval.num_samples = 256
    config.bench.num_samples = 256
    return config
