"""The three-component Gaussian-field mixture of ``configs/analytic/mixture_32.py`` at
256 x 256 under the FFHQ-256 NCSN++ VE sampler settings (2000 levels, snr 0.075, 66
iterations). sigma_max = 182 as score_sde chooses it: the largest Euclidean distance between
two of 400 exact samples is 182.4 (the median 126.4)."""

from configs.analytic.common import get_analytic_config
from configs.analytic.mixture_32 import set_mixture


def get_config():
    config = get_analytic_config(image_size=256, sigma_max=182.0, num_scales=2000, snr=0.075)
    set_mixture(config)
    config.sampling.speed_up = 30.0  # 66 iterations, the paper's FFHQ setting
    config.eval.batch_size = 8
    config.eval.num_samples = 8
    config.bench.num_samples = 6
    config.bench.batch_size = 6
    return config
