"""The 16x16 Gaussian field with its exact score, under the sampler and bench settings of the
trained-network config ``configs/ve/gaussian_field_16_ncsnpp_small.py`` (VE sigma 0.01 -> 20,
1000 levels, snr 0.16, PDS alpha 5 with the 'stats' frequency mask, the bench ladder
20 / 40 / 66 / 100 / 200 at 64 samples). Only the score differs, so the two benches tell
sampler error from score error (benchmarks/field16_exact_vs_learned.py)."""

from configs.analytic.common import get_analytic_config


def get_config():
    config = get_analytic_config(image_size=16, sigma_max=20.0, num_scales=1000, snr=0.16)
    config.eval.batch_size = 16
    config.eval.num_samples = 16
    config.bench.steps = (20, 40, 66, 100, 200)
    config.bench.num_samples = 64
    config.bench.batch_size = 64
    return config
