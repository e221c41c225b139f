"""Assemble a sampling experiment from a config: SDE and time grid, score model and its
variables, preconditioner, image shape. Run modes (sample, bench, eval) start from here."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from pds.method import precondition, tuned_alpha
from pds.method.precondition import Preconditioner
from pds.method.sde import SDE
from pds.runtime.errors import ConfigError, check_choice
from pds.sampling.grid import TimeGrid, num_iterations, sampling_schedule


@dataclasses.dataclass
class Experiment:
    sde: SDE
    grid: TimeGrid
    image_shape: tuple[int, int, int]  # (H, W, C)
    score_builder: Callable[[SDE, Any], Callable]  # (sde, variables) -> score_fn(x, t)
    variables: Any
    precond: Preconditioner
    field: Any = None  # the exact GaussianField, when the data distribution is one
    mixture: Any = None  # the exact GaussianMixtureField, when the data distribution is one
    checkpoint: dict | None = None  # network variables: {'path', 'step', 'source'}
    prior_mean: np.ndarray | None = None  # (H, W, C) data mean of sampling.prior='mean'
    prior_spectrum: np.ndarray | None = None  # (H, W // 2 + 1, C) lambda, prior 'gaussian'


def image_shape(config) -> tuple[int, int, int]:
    size, channels = config.data.image_size, config.data.num_channels
    if not isinstance(size, int) or size < 2:
        raise ConfigError('data.image_size', size, 'an integer >= 2')
    return (size, size, int(channels))


def stats_images(config, n: int) -> np.ndarray:
    """n training images (N, H, W, C) in [0, 1], for mask statistics: exact field samples
    for exact-score models, else the first n images of ``config.data`` (pds.data.pipelines)."""
    from pds.data.pipelines import load_images, unscale

    if config.model.name == 'gaussian_field':
        from pds.analytic.gaussian_field import field_from_config

        h, w, _ = image_shape(config)
        x = field_from_config(config).sample(np.random.default_rng(config.seed + 7919), n, h, w)
        return unscale(x, config.data.centered)
    if config.model.name == 'gaussian_mixture':
        from pds.analytic.mixture import mixture_from_config

        h, w, _ = image_shape(config)
        x = mixture_from_config(config).sample(np.random.default_rng(config.seed + 7919), n, h, w)
        return unscale(x, config.data.centered)
    return load_images(config, n)


def preconditioner_from_config(config) -> Preconditioner:
    """M of ``sampling.precondition`` (REFERENCE.md section 1), statistics from
    :func:`stats_images`."""
    return precondition.preconditioner_from_config(config, image_shape(config),
                                                   lambda n: stats_images(config, n))


def score_model_from_config(config, workdir: str | None = None):
    """(score_builder, variables, field, checkpoint) for ``config.model.name``; checkpoint
    (None for exact scores) is where a network's variables came from."""
    shape = image_shape(config)
    if config.model.name == 'gaussian_field':
        from pds.analytic.gaussian_field import (
            capped_score_builder,
            exact_score_fn,
            field_from_config,
        )

        field = field_from_config(config)
        if field.num_channels != shape[2]:
            raise ConfigError('model.field_mean', config.model.field_mean,
                              f'one mean per channel (data.num_channels={shape[2]})')
        cap = config.model.get('score_norm_cap', 0.0)
        if isinstance(cap, bool) or not isinstance(cap, int | float) or cap < 0:
            raise ConfigError('model.score_norm_cap', cap, 'a number >= 0 (0: the exact score)')
        builder = capped_score_builder(float(cap)) if cap > 0 else exact_score_fn
        return builder, field.variables(shape[0], shape[1]), field, None
    if config.model.name == 'gaussian_mixture':  # exact score; the mixture: experiment_mixture
        from pds.analytic.mixture import mixture_score_fn

        mixture = experiment_mixture(config)
        return mixture_score_fn, mixture.variables(shape[0], shape[1]), None, None
    from pds.modes.network_model import network_score_model

    builder, variables, checkpoint = network_score_model(config, workdir)
    field = None
    if config.data.dataset == 'gaussian_field':  # a network trained on the field: exact FD
        from pds.analytic.gaussian_field import field_from_config

        field = field_from_config(config)
    return builder, variables, field, checkpoint


def apply_tuned_alpha(config):
    """``config`` with the alpha of ``sampling.pds.tuned``'s table for its iteration count
    (:mod:`pds.method.tuned_alpha`; a copy, the preconditioner off where the table says so),
    or ``config`` itself when no table is set or no preconditioner used. Idempotent."""
    path = config.sampling.pds.get('tuned', '') if 'pds' in config.sampling else ''
    if not path or config.sampling.precondition != 'pds':
        return config
    steps, alphas = tuned_alpha.read_table(path)
    alpha = tuned_alpha.alpha_for(steps, alphas, num_iterations(config)[0], path)
    out = copy.deepcopy(config)
    if alpha is None:
        out.sampling.precondition = 'none'
    else:
        out.sampling.pds.alpha = alpha
    return out


def experiment_from_config(config, workdir: str | None = None) -> Experiment:
    config = apply_tuned_alpha(config)
    sde, grid = sampling_schedule(config)
    precond = preconditioner_from_config(config)
    builder, variables, field, checkpoint = score_model_from_config(config, workdir)
    mixture = experiment_mixture(config)
    mean, spectrum = prior_moments(config, field, mixture)
    return Experiment(sde, grid, image_shape(config), builder, variables, precond, field,
                      mixture, checkpoint, mean, spectrum)


PRIORS = ('score_sde', 'mean', 'gaussian')


def prior_moments(config, field, mixture=None
                  ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(mean (H, W, C), half spectrum lambda (H, W // 2 + 1, C)) of ``sampling.prior``: both
    None for the reference's 'score_sde' prior, the data mean for 'mean', and the data mean
    and spectrum for 'gaussian' (x_T with the marginal's per-mode variance
    alpha(T)^2 lambda + std(T)^2). Known exactly for Gaussian-field data, and the mean for
    the Gaussian mixture (``mixture``, its exact mean sum_k pi_k mu_k)."""
    prior = config.sampling.get('prior', 'score_sde')
    check_choice('sampling.prior', prior, PRIORS)
    if prior == 'score_sde':
        return None, None
    if (prior == 'gaussian' and config.sampling.precondition != 'none'
            and config.sampling.get('ode_corrector', 'none') == 'none'):  # else M: corrector only
        raise ConfigError('sampling.prior', prior, "'score_sde' or 'mean' with "
                          "sampling.precondition='pds' (PDS colours x_T itself)")
    h, w, _ = image_shape(config)
    stats = config.sampling.get('prior_stats', '')
    if stats:  # a network's data: the moments --mode=stats measured
        return stats_prior(config, stats, prior)
    if field is None and mixture is not None and prior == 'mean':
        return mixture.exact_moments(h, w)['mean'].astype(np.float32), None
    if field is None:
        raise ConfigError('sampling.prior', prior, "'score_sde' for this data (the "
                          f"{prior} prior needs the data's moments: set "
                          "sampling.prior_stats to a --mode=stats spectrum.npz; they are known "
                          "for data.dataset='gaussian_field', the mean for 'gaussian_mixture')")
    mean = np.broadcast_to(np.asarray(field.mean, np.float32), image_shape(config)).copy()
    if prior == 'mean':
        return mean, None
    return mean, field.half_spectrum(h, w).astype(np.float32)


def stats_prior(config, path: str, prior: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The prior's (mean (H, W, C), half spectrum (H, W // 2 + 1, C)) from a
    ``--mode=stats`` spectrum.npz, in the model's data units: x -> 2 x - 1 (mean 2 mu - 1,
    spectrum 4 lambda) with ``data.centered``."""
    from pds.storage.readers import read_data_spectrum

    h, w, c = image_shape(config)
    mean, power = read_data_spectrum(path, (h, w, c))
    if config.data.centered:
        mean, power = 2.0 * mean - 1.0, 4.0 * power
    mean_img = np.broadcast_to(mean.astype(np.float32), (h, w, c)).copy()
    if prior == 'mean':
        return mean_img, None
    half = np.moveaxis(power, 0, -1)[:, : w // 2 + 1]
    return mean_img, half.astype(np.float32)


def experiment_mixture(config):
    """The exact GaussianMixtureField of a 'gaussian_mixture' model or dataset, else None."""
    if 'gaussian_mixture' not in (config.model.name, config.data.dataset):
        return None
    from pds.analytic.mixture import mixture_from_config

    mixture = mixture_from_config(config)
    if mixture.num_channels != image_shape(config)[2]:
        raise ConfigError('model.mixture_means', config.model.mixture_means,
                          f'one mean per channel (data.num_channels={image_shape(config)[2]})')
    return mixture
