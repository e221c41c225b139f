"""A mixture of three stationary Gaussian fields at 32 x 32 (pds/analytic/mixture.py): a
non-Gaussian target whose perturbed score is still exact, under the CIFAR-10 NCSN++ VE sampler
settings (1000 levels, snr 0.16, 100 iterations).

Components (weights 0.5, 0.3, 0.2): a warm, rough field (means 0.65 / 0.45 / 0.35, variance
0.04, spectral slope beta 0.75), a cool one (0.35 / 0.45 / 0.65, 0.03, beta 1.0) and a green,
smooth one (0.45 / 0.6 / 0.4, 0.02, beta 1.5); k0 = 1 for all. sigma_max = 26 as score_sde
chooses it: the largest Euclidean distance between two of 4000 exact samples is 26.1 (the
median 15.9).
"""

from configs.analytic.common import get_analytic_config

WEIGHTS = (0.5, 0.3, 0.2)
MEANS = ((0.65, 0.45, 0.35), (0.35, 0.45, 0.65), (0.45, 0.6, 0.4))
VARIANCES = (0.04, 0.03, 0.02)
K0 = (1.0, 1.0, 1.0)
BETAS = (0.75, 1.0, 1.5)


def set_mixture(config):
    """Data and model fields of the three-component mixture (in [0, 1] data units)."""
    config.data.dataset = 'gaussian_mixture'
    model = config.model
    model.name = 'gaussian_mixture'
    model.mixture_weights = WEIGHTS
    model.mixture_means = MEANS
    model.mixture_variances = VARIANCES
    model.mixture_k0 = K0
    model.mixture_betas = BETAS
    return config


def get_config():
    config = get_analytic_config(image_size=32, sigma_max=26.0, num_scales=1000, snr=0.16)
    set_mixture(config)
    config.sampling.speed_up = 10.0  # 100 iterations
    config.eval.batch_size = 64
    config.eval.num_samples = 256
    config.bench.num_samples = 256
    return config
