"""Assemble a sampling experiment from a config: SDE and time grid, score model and its
variables, preconditioner, image shape. Run modes (sample, bench, eval) start from here."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from pds.analytic.gaussian_field import GaussianField
from pds.analytic.mixture import GaussianMixtureField
from pds.analytic.targets import ExactTarget
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
    field: GaussianField | None = None  # the exact target, when it is a Gaussian field
    mixture: GaussianMixtureField | None = None  # the exact target, when it is a mixture
    checkpoint: dict | None = None  # network variables: {'path', 'step', 'source'}
    prior_mean: np.ndarray | None = None  # (H, W, C) data mean of sampling.prior='mean'
    prior_spectrum: np.ndarray | None = None  # (H, W // 2 + 1, C) lambda, prior 'gaussian'

    @property
    def target(self) -> ExactTarget | None:
        """The data distribution when known exactly (:mod:`pds.analytic.targets`), else None."""
        return self.field if self.field is not None else self.mixture


def image_shape(config) -> tuple[int, int, int]:
    size, channels = config.data.image_size, config.data.num_channels
    if not isinstance(size, int) or size < 2:
        raise ConfigError('data.image_size', size, 'an integer >= 2')
    return (size, size, int(channels))


def stats_images(config, n: int) -> np.ndarray:
    """n training images (N, H, W, C) in [0, 1], for mask statistics: exact samples of the
    target for exact-score models (:mod:`pds.analytic.targets`), else the first n images of
    ``config.data`` (pds.data.pipelines)."""
    from pds.analytic.targets import score_target
    from pds.data.pipelines import load_images, unscale

    target = score_target(config)
    if target is not None:
        h, w, _ = image_shape(config)
        x = target.sample(np.random.default_rng(config.seed + 7919), n, h, w)
        return unscale(x, config.data.centered)
    return load_images(config, n)


def preconditioner_from_config(config) -> Preconditioner:
    """M of ``sampling.precondition`` (:mod:`pds.method.pds_preconditioner`), statistics from
    :func:`stats_images`."""
    return precondition.preconditioner_from_config(config, image_shape(config),
                                                   lambda n: stats_images(config, n))


def score_model_from_config(config, workdir: str | None = None):
    """(score_builder, variables, target, checkpoint) for ``config.model.name``: an exact
    target's score (:mod:`pds.analytic.targets`) or a network's; ``target`` is the experiment's
    exact target (:func:`pds.analytic.targets.experiment_target`, None when the data is not
    known exactly) and ``checkpoint`` (None for exact scores) where a network's variables came
    from."""
    from pds.analytic.targets import TARGETS, experiment_target

    h, w, _ = image_shape(config)
    target = experiment_target(config)
    kind = TARGETS.get(config.model.name)
    if kind is not None:  # the target's exact score
        return kind.score_builder(config), target.variables(h, w), target, None
    from pds.experiment.network import network_score_model

    builder, variables, checkpoint = network_score_model(config, workdir)
    return builder, variables, target, checkpoint


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
    builder, variables, target, checkpoint = score_model_from_config(config, workdir)
    field, mixture = split_target(target)
    mean, spectrum = prior_moments(config, target)
    return Experiment(sde, grid, image_shape(config), builder, variables, precond, field,
                      mixture, checkpoint, mean, spectrum)


def split_target(target) -> tuple[GaussianField | None, GaussianMixtureField | None]:
    """(field, mixture): the target in the :class:`Experiment` slot of its type."""
    return (target if isinstance(target, GaussianField) else None,
            target if isinstance(target, GaussianMixtureField) else None)


PRIORS = ('score_sde', 'mean', 'gaussian')


def prior_moments(config, target) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(mean (H, W, C), half spectrum lambda (H, W // 2 + 1, C)) of ``sampling.prior``: both
    None for the reference's 'score_sde' prior, the data mean for 'mean', and the data mean
    and spectrum for 'gaussian' (x_T with the marginal's per-mode variance
    alpha(T)^2 lambda + std(T)^2). Known exactly for an exact ``target``
    (:mod:`pds.analytic.targets`): its mean, and its spectrum when every Fourier mode is an
    independent Gaussian; else read from ``sampling.prior_stats``."""
    prior = config.sampling.get('prior', 'score_sde')
    check_choice('sampling.prior', prior, PRIORS)
    if prior == 'score_sde':
        return None, None
    if (prior == 'gaussian' and config.sampling.precondition != 'none'
            and config.sampling.get('ode_corrector', 'none') == 'none'):  # else M: corrector only
        raise ConfigError('sampling.prior', prior, "'score_sde' or 'mean' with "
                          "sampling.precondition='pds' (PDS colours x_T itself)")
    return data_moments_for_prior(config, target, prior)


def data_moments_for_prior(config, target, prior: str
                           ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """:func:`prior_moments` of the prior ``prior`` (one of ``PRIORS``) without the sampler's
    rule on preconditioners (the likelihood's ODE has none)."""
    from pds.analytic.targets import quoted, target_names

    if prior == 'score_sde':
        return None, None
    h, w, _ = image_shape(config)
    stats = config.sampling.get('prior_stats', '')
    if stats:  # a network's data: the moments --mode=stats measured
        return stats_prior(config, stats, prior)
    if target is None:  # a network's data without a stats file: measured now
        from pds.method.masks import power_spectrum

        n = config.sampling.pds.num_stat_images
        spectrum = power_spectrum(stats_images(config, n))
        return moments_prior(config, spectrum['mean'].astype(np.float64),
                             spectrum['power_centered'].astype(np.float64), prior)
    if target is not None and prior == 'mean':
        return target.prior_mean(h, w), None
    if target is None or not target.gaussian_modes:
        raise ConfigError('sampling.prior', prior, "'score_sde' for this data (the "
                          f"{prior} prior needs the data's moments: set "
                          "sampling.prior_stats to a --mode=stats spectrum.npz; they are known "
                          f'for data.dataset={quoted(target_names(gaussian_modes=True))}, the '
                          f'mean for {quoted(target_names(gaussian_modes=False))})')
    spectrum = target.target_moments(h, w)[1][:, : w // 2 + 1]  # the rfft2 half spectrum
    return target.prior_mean(h, w), spectrum.astype(np.float32)


def stats_prior(config, path: str, prior: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The prior's (mean (H, W, C), half spectrum (H, W // 2 + 1, C)) from a
    ``--mode=stats`` spectrum.npz (:func:`moments_prior`)."""
    from pds.storage.readers import read_data_spectrum

    mean, power = read_data_spectrum(path, image_shape(config))
    return moments_prior(config, mean, power, prior)


def moments_prior(config, mean: np.ndarray, power: np.ndarray, prior: str
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """The prior's (mean (H, W, C), half spectrum (H, W // 2 + 1, C)) from the data's
    per-channel mean (C,) and centred power spectrum (C, H, W) in [0, 1] units, in the
    model's data units: x -> 2 x - 1 (mean 2 mu - 1, spectrum 4 lambda) with
    ``data.centered``."""
    h, w, c = image_shape(config)
    if config.data.centered:
        mean, power = 2.0 * mean - 1.0, 4.0 * power
    mean_img = np.broadcast_to(mean.astype(np.float32), (h, w, c)).copy()
    if prior == 'mean':
        return mean_img, None
    half = np.moveaxis(power, 0, -1)[:, : w // 2 + 1]
    return mean_img, half.astype(np.float32)
