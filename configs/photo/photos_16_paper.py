"""The paper's experiment on the committed 16x16 photo network: quality against NFE (20 to
1000) for the reference PC sampler with PDS (alpha 5) and without, and every fast solver of the
project, with the network's converged samples (PC, 2000 iterations) and the converged ODE
solution (dopri5, rtol 1e-4) as references (docs/photos.md: cost and results).

``python main.py --config=configs/photo/photos_16_paper.py --workdir=runs/photo_paper
--mode=bench``
"""

import ml_collections

from configs.photo import photos_16, photos_16_bench


def get_config() -> ml_collections.ConfigDict:
    config = photos_16_bench.with_committed_network(photos_16.get_config())
    b = config.bench
    # alpha per N from --mode=tune on this network (docs/photos.md)
    config.sampling.pds.tuned = 'benchmarks/results/photo/tune/alpha.json'
    b.samplers = ('pc', 'pc_pds', 'pc_pds_tuned', 'dpm_solver_2m', 'dpm_solver_3m', 'unipc',
                  'edm_heun', 'edm_stochastic', 'adaptive_sde', 'dopri5')
    b.nfe = (20, 40, 66, 100, 200, 400, 1000)
    b.rtols = (1e-2, 1e-3, 1e-4)
    b.eps_rels = (0.5, 0.1, 0.05)
    b.num_samples = 128  # affordable here (about 70 minutes); SWD is biased at this n
    b.batch_size = 128
    # edm_stochastic with EDM's ImageNet-64 churn (with the default S_churn = 0 it is
    # edm_heun, bit for bit)
    config.sampling.edm.update(s_churn=40.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.003)
    b.converged_steps = 2000
    b.ode_reference_rtol = 1e-4
    return config
