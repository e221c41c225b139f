"""Config fields shared by every experiment.

Field names follow score_sde where score_sde has the field (``training.*``, ``sampling.*``,
``eval.*``, ``data.*``, ``model.*``, ``optim.*``, ``seed``); the PDS fields live under
``sampling.precondition`` and ``sampling.pds``. Dataset defaults (``default_*_configs.py``)
build on :func:`get_base_config`, and each experiment file builds on a dataset default.
"""

import ml_collections
from ml_collections import config_dict


def pds_sampling_fields() -> ml_collections.ConfigDict:
    """The preconditioner block ``sampling.pds`` (PDS, arXiv 2207.02196; github.com/fudan-zvg/PDS).

    freq_mask / space_mask: '' (gain 1), a path to a reference ``.npy`` of shape (C, H, W),
    or 'stats' to compute the statistic from ``num_stat_images`` images of the data.
    transform: 'normalized' (current reference: f / max f, then alpha / (f + alpha - 1)) or
    'legacy' (the pre-2023 transform: no max-normalisation and D = 1 / s).
    """
    pds = ml_collections.ConfigDict()
    pds.alpha = 5.0
    pds.freq_mask = 'stats'
    pds.space_mask = ''
    pds.transform = 'normalized'
    pds.num_stat_images = 200
    # How M enters the reverse-SDE predictors: 'reference' (the paper's sampler: M M^T on the
    # whole reverse drift; biased, it does not keep the marginals) or 'invariant'
    # (1/2 (I + M M^T) on the score term; keeps them). See pds/sampling/predictors.py.
    pds.predictor_form = 'reference'
    # A table alpha*(N) written by --mode=tune (<workdir>/tune/alpha.json): when set, alpha is
    # looked up for the run's iteration count (pds/method/tuned_alpha.py) and the value above
    # is ignored; N between two tuned counts interpolates log alpha over log N.
    pds.tuned = ''
    # the table records the settings it was tuned under (sampler, noise range, masks, data);
    # a run whose settings differ is refused unless this is True (pds/method/tuned_tables.py)
    pds.tuned_any_config = False
    return pds


def solver_fields(sampling: ml_collections.ConfigDict) -> None:
    """Add the solvers' own blocks to ``sampling``, as each solver declares them with itself
    (the ``CONFIG_FIELDS`` literal of its module, read without importing JAX): ``sampling.edm``
    (edm_stochastic's churn: s_churn, s_tmin, s_tmax, s_noise; EDM's defaults, S_tmax 1e6 for
    EDM's inf), ``sampling.adaptive`` (dopri5: rtol, atol; adaptive_sde: eps_rel, eps_abs,
    exponent, h_init; both: safety, max_steps) and any later solver's."""
    from pds.sampling.declaration import config_value, declared_config_blocks

    for block, fields in declared_config_blocks().items():
        sampling[block] = ml_collections.ConfigDict(
            {name: config_value(default) for name, default in fields.items()})


def get_base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 42

    config.training = training = ml_collections.ConfigDict()
    training.batch_size = 128
    training.n_iters = 1300001
    training.snapshot_freq = 50000
    training.log_freq = 50
    training.eval_freq = 100
    training.snapshot_freq_for_preemption = 10000
    training.snapshot_sampling = True
    training.likelihood_weighting = False
    training.continuous = True
    training.n_jitted_steps = 5
    # gradient microbatches, fixed-order sum (pds/training/train.py); 0: auto
    training.grad_shards = 0
    training.reduce_mean = False
    training.sde = 'vesde'
    training.tensorboard = True  # TensorBoard event files (pds/storage/summaries.py)

    config.sampling = sampling = ml_collections.ConfigDict()
    sampling.method = 'pc'
    sampling.predictor = 'reverse_diffusion'
    sampling.corrector = 'langevin'
    sampling.n_steps_each = 1
    sampling.noise_removal = True
    sampling.probability_flow = False
    sampling.snr = 0.16
    sampling.precondition = 'none'  # none | pds
    # A Langevin corrector (sampling.snr, sampling.n_steps_each) after each step of a
    # fixed-step ODE solver: none | langevin | ald (pds/sampling/with_corrector.py). With
    # precondition='pds' M goes to this corrector only, never to the ODE step or x_T.
    sampling.ode_corrector = 'none'
    sampling.pds = pds_sampling_fields()
    sampling.speed_up = 1.0  # reference schedule: N = int(num_scales / speed_up)
    sampling.steps = config_dict.placeholder(int)  # set: overrides the iteration count
    sampling.grid = 'ladder'  # ladder (t uniform) | karras | logsnr (pds/sampling/grid.py)
    sampling.rho = 7.0  # the 'karras' grid's exponent
    # dpm_solver_2m, dpm_solver_3m, unipc: 'ours' (as derived in their modules) or
    # 'reference' (their official code's update and defaults, on the same grid; the other
    # solvers ignore it): pds/sampling/variant.py
    sampling.solver_variant = 'ours'
    # x_T: 'score_sde' (the reference: the SDE's prior, mean 0), 'mean' (the data mean
    # carried to T, plus the prior's noise: x_T = alpha(T) mu + prior) or 'gaussian' (also
    # the data spectrum: the marginal at T of a Gaussian with the data's mean and spectrum)
    sampling.prior = 'score_sde'
    # the data moments of the 'mean' and 'gaussian' priors for a network's data: a
    # stats/spectrum.npz written by --mode=stats ('' : known data only, the field or mixture)
    sampling.prior_stats = ''
    solver_fields(sampling)  # sampling.edm, sampling.adaptive, ... (pds/sampling/*.py)
    sampling.save_raw = False
    # the iteration bar's updates: 0 about 50 per run, k every k iterations; -1 no bar, and
    # then the compiled sampler has no host callback, so that JAX's persistent compilation
    # cache (JAX_COMPILATION_CACHE_DIR) can keep it for the next run (it never stores a
    # program with a callback)
    sampling.progress_every = 0
    # a network config whose --workdir has no checkpoint: an error unless this is set
    sampling.allow_random_init = False
    # a network's sampling variables: '' reads <workdir>/checkpoints (what --mode=train and
    # --mode=convert write); else a folder holding such a checkpoints/ folder (an export)
    sampling.checkpoint_dir = ''

    # --mode=eval: checkpoint steps s with begin_ckpt <= s <= end_ckpt (end_ckpt -1: no upper
    # bound; begin_ckpt -1: the newest stored step only); exact-score models have one
    # evaluation, 'exact'. num_samples must be a multiple of batch_size (whole rounds).
    config.eval = evaluate = ml_collections.ConfigDict()
    evaluate.begin_ckpt = -1
    evaluate.end_ckpt = -1
    evaluate.batch_size = 64
    evaluate.num_samples = 64
    evaluate.inception_weights = 'inception_fid.npz'  # python -m evaluation.inception_weights
    evaluate.ref_stats = ''  # reference FID statistics (.npz); '' skips FID and KID
    evaluate.inception_batch_size = 50
    evaluate.is_splits = 10  # Inception Score splits (fewer when there are fewer samples)
    evaluate.kid_subset_size = 1000
    evaluate.kid_num_subsets = 100
    # --mode=likelihood (pds/likelihood/run.py): bits/dim of eval.num_samples examples of the
    # split eval.bpd_dataset ('train' or 'test', score_sde's field) in rounds of
    # eval.batch_size, through the probability-flow ODE from bpd_eps to T. bpd_num_probes 0:
    # the exact divergence (one JVP per dimension: small images); k >= 1: Hutchinson with k
    # probes of bpd_probe ('rademacher' as score_sde, or 'gaussian'). bpd_solver 'dopri5'
    # (per-example steps, bpd_rtol / bpd_atol / bpd_max_steps; score_sde's RK45 tolerances)
    # or 'euler' / 'heun' on bpd_steps intervals of a bpd_grid ('ladder', 'karras', 'logsnr')
    # grid. The prior is sampling.prior.
    evaluate.bpd_dataset = 'test'
    evaluate.bpd_num_probes = 1
    evaluate.bpd_probe = 'rademacher'
    evaluate.bpd_solver = 'dopri5'
    evaluate.bpd_rtol = 1e-5
    evaluate.bpd_atol = 1e-5
    evaluate.bpd_max_steps = 10000
    evaluate.bpd_steps = 100
    evaluate.bpd_grid = 'logsnr'
    evaluate.bpd_eps = 1e-5

    config.bench = bench = ml_collections.ConfigDict()
    bench.steps = (20, 40, 66, 100, 133, 200, 2000)
    bench.estimate = 'auto'  # 'population' (exact moments), 'sampled', or the first that applies
    bench.alphas = (2.0, 5.0, 10.0, 30.0)  # PDS curves of the population estimate
    bench.spot_checks = ((20, 0.0), (40, 5.0))  # sampled (iterations, alpha; 0: baseline) cells
    bench.num_samples = 64  # per sampled cell
    bench.batch_size = 64
    # Across samplers (pds/quality/samplers.py): set bench.samplers to compare them at each
    # NFE budget (fixed-step solvers) or tolerance (adaptive ones) in bench/samplers.*
    bench.samplers = ()  # e.g. ('pc', 'pc_pds', 'edm_heun', 'dpm_solver_2m', 'dopri5')
    bench.nfe = (20, 40, 66, 100, 200, 400, 1000)
    bench.rtols = (1e-2, 1e-3, 1e-4)  # dopri5 (rtol = atol)
    bench.eps_rels = (0.5, 0.1, 0.05)  # adaptive_sde
    bench.ode_prior = 'mean'  # x_T of the ODE and adaptive solvers: 'mean' or 'score_sde'
    # real data (pds/quality/data_bench.py): the converged references and the data moments
    bench.converged_steps = 2000  # pc iterations of the network's converged samples; 0: none
    bench.ode_reference_rtol = 1e-5  # dopri5 of the deterministic samplers' error; 0: none
    bench.moment_images = 8192  # training images of the data moments and the Gaussian model
    bench.memorisation_images = 8192  # training images the memorisation check searches
    bench.target_fd = 0.0  # the headline's FD target; 0: the expected FD of 50k exact samples

    # --mode=tune (pds/modes/tune.py): alpha* per iteration count, by the bench's estimate
    config.tune = tune = ml_collections.ConfigDict()
    tune.steps = (20, 40, 66, 100, 133, 200, 333, 500, 666, 1000, 2000)
    tune.alphas = (1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0, 200.0, 500.0,
                   1000.0)
    tune.refine = 8  # golden-section evaluations around the grid's best (population only)
    tune.estimate = 'auto'  # as bench.estimate
    tune.num_samples = 256  # per sampled cell
    tune.metric = 'fd'  # real data: 'fd' (Fourier-mode FD) or 'swd', against held-out images
    tune.batch_size = 64

    config.data = data = ml_collections.ConfigDict()
    data.dataset = 'CIFAR10'
    data.image_size = 32
    data.random_flip = True
    data.centered = False
    data.uniform_dequantization = False
    data.num_channels = 3
    # Input sources (pds/data/pipelines.py): a folder or .npz/.npy for dataset 'folder' /
    # 'npz' (and a prepared FFHQ / CelebAHQ), the LSUN category, score_sde's FFHQ / CelebAHQ
    # TFRecords, and the TFDS data directory ('' = TFDS's default; download only if tfds_download).
    data.path = ''
    data.category = ''
    data.tfrecords_path = ''
    data.tfds_data_dir = ''
    data.tfds_download = False
    data.shuffle_buffer = 10000  # TFDS / TFRecord sources only

    config.model = model = ml_collections.ConfigDict()
    model.name = 'ncsnpp'
    model.sigma_min = 0.01
    model.sigma_max = 50.0
    model.num_scales = 1000
    model.beta_min = 0.1
    model.beta_max = 20.0
    model.dropout = 0.1
    model.embedding_type = 'fourier'
    model.dtype = 'float32'
    model.ema_rate = 0.999  # EMA of the parameters in training; network configs set theirs

    config.optim = optim = ml_collections.ConfigDict()
    optim.weight_decay = 0.0
    optim.optimizer = 'Adam'
    optim.lr = 2e-4
    optim.beta1 = 0.9
    optim.eps = 1e-8
    optim.warmup = 5000
    optim.grad_clip = 1.0
    return config


def dataset_defaults(dataset: str, image_size: int, sigma_max: float, num_scales: int,
                     snr: float, dropout: float) -> ml_collections.ConfigDict:
    """The base config with a dataset's image format, VE noise range and corrector snr.

    Network configs start with ``sampling.pds.freq_mask = ''`` (gain 1): masks come from
    dataset statistics (``--mode=stats``) or a reference ``.npy`` file.
    """
    config = get_base_config()
    config.sampling.snr = snr
    config.sampling.pds.freq_mask = ''
    # Headline FIDs use 50k samples; the batch divides 50000 and splits over 8 devices.
    config.eval.num_samples = 50000
    config.eval.batch_size = 1000 if image_size <= 64 else 40
    data = config.data
    data.dataset = dataset
    data.image_size = image_size
    data.random_flip = True
    data.centered = False
    data.uniform_dequantization = False
    data.num_channels = 3
    model = config.model
    model.sigma_min = 0.01
    model.sigma_max = sigma_max
    model.num_scales = num_scales
    model.dropout = dropout
    return config

