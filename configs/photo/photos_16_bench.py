"""The photo bench of the README: the committed 16x16 photo network (weights/photos_16,
trained by ``configs/photo/photos_16.py``) sampled by the reference PC sampler with and
without PDS (alpha 5) and two fast ODE solvers at 20, 66 and 200 score evaluations, 256
samples per cell, measured against held-out patches (pds/quality/data_bench.py).

``python main.py --config=configs/photo/photos_16_bench.py --workdir=runs/photo_bench
--mode=bench`` (docs/photos.md: its cost and what the numbers mean).
"""

import ml_collections

from configs.photo import photos_16

EXPORT = 'weights/photos_16'


def with_committed_network(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``config`` reading the committed network and its data statistics (the mean and
    spectrum of ``sampling.prior='mean'``, PDS's frequency mask: ``--mode=stats``)."""
    config.sampling.checkpoint_dir = EXPORT
    config.sampling.prior_stats = f'{EXPORT}/stats/spectrum.npz'
    config.sampling.pds.freq_mask = f'{EXPORT}/stats/freq_mask.npy'
    return config


def get_config() -> ml_collections.ConfigDict:
    config = with_committed_network(photos_16.get_config())
    b = config.bench
    b.samplers = ('pc', 'pc_pds', 'dpm_solver_3m', 'edm_heun')
    b.nfe = (20, 66, 200)
    b.num_samples = 256  # SWD's small-sample bias: A vs B 150 +- 17 at 128, 90 +- 8 at 256
    b.batch_size = 128
    b.converged_steps = 0  # the converged references are photos_16_paper.py's
    b.ode_reference_rtol = 0.0
    t = config.tune  # --mode=tune: alpha* by the Fourier FD against held-out patches
    t.steps, t.alphas = (10, 33, 100), (2.0, 3.0, 5.0, 10.0)
    t.num_samples = t.batch_size = 128
    t.metric = 'fd'
    return config
