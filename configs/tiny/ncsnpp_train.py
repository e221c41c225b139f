"""A tiny NCSN++ (nf 8, one resolution, no attention) trained on the 8x8 Gaussian field.

Small enough to compile and train in seconds on CPU: 40 steps of batch 8, two steps per
compiled call, a preemption checkpoint every 4 steps and snapshots every 20. The training
tests (tests/pds/training/) and benchmarks/cpu_layout_check.py use it.
"""

import ml_collections

from configs.analytic.common import get_analytic_config
from configs.archs import ncsnpp


def get_config() -> ml_collections.ConfigDict:
    config = get_analytic_config(image_size=8, sigma_max=10.0, num_scales=100, snr=0.16)
    ncsnpp(config.model, nf=8, ch_mult=(1,), num_res_blocks=1, fir=False, ema_rate=0.9)
    config.model.attn_resolutions = ()
    config.model.dropout = 0.1
    config.data.image_size = 8
    t = config.training
    t.batch_size = 8
    t.n_iters = 40
    t.n_jitted_steps = 2
    t.log_freq = 2
    t.eval_freq = 10
    t.snapshot_freq = 20
    t.snapshot_freq_for_preemption = 4
    t.snapshot_sampling = False
    t.tensorboard = False
    config.optim.warmup = 3
    config.optim.lr = 1e-3
    return config
