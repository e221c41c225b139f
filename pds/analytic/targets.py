"""Exact targets: data distributions known in closed form, and the config names that select
them. Code asks the target (the :class:`ExactTarget` protocol) instead of comparing names.

A target is exact when its density, and hence its perturbed score at every noise level and its
first two moments, have closed forms. Every target here is a stationary Gaussian field
(``pds.analytic.gaussian_field``) or a mixture of them (``pds.analytic.mixture``). What code asks:

- ``gaussian_modes``: every orthonormal Fourier mode is an independent Gaussian (the field).
  Then the exact score -F^-1[F[x - a mu] / (a^2 lambda + s^2)] is affine in x, and a sampler
  whose steps are affine per mode carries its output's per-mode moments exactly
  (``pds.analytic.moments``: the population Frechet distance, no sampling noise).
- ``target_moments(h, w)``: the exact per-channel mean (C,) and per-mode variance (H, W, C)
  in the orthonormal Fourier basis, float64: the Gaussian a Frechet distance is measured to.
- ``prior_mean(h, w)``: the exact mean image (H, W, C), float32 (``sampling.prior='mean'``).
- ``sample(rng, n, h, w)``, ``variables(h, w)`` (the arrays its exact score reads) and
  ``num_channels``.

``model.name`` naming a target selects its exact score (:func:`score_target`);
``data.dataset`` naming one draws the data from it (:func:`data_target`), also for a network
trained on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import numpy as np

from pds.analytic.gaussian_field import (
    GaussianField,
    capped_score_builder,
    exact_score_fn,
    field_from_config,
)
from pds.analytic.mixture import GaussianMixtureField, mixture_from_config, mixture_score_fn
from pds.runtime.errors import ConfigError


class ExactTarget(Protocol):
    """A data distribution known in closed form (module docstring)."""

    gaussian_modes: ClassVar[bool]

    @property
    def num_channels(self) -> int: ...

    def target_moments(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]: ...

    def prior_mean(self, h: int, w: int) -> np.ndarray: ...

    def sample(self, rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray: ...

    def variables(self, h: int, w: int) -> Any: ...


@dataclasses.dataclass(frozen=True)
class TargetKind:
    """How a config builds a target and its exact score.

    ``score_builder(config)`` returns ``builder(sde, variables) -> score_fn(x, t)``;
    ``means_field`` is the config field that sets the per-channel means (named by errors)."""

    target_type: type
    from_config: Callable[[Any], ExactTarget]
    score_builder: Callable[[Any], Callable]
    means_field: str


def _field_score_builder(config) -> Callable:
    """The field's exact score, or its norm-capped variant (``model.score_norm_cap`` > 0)."""
    cap = config.model.get('score_norm_cap', 0.0)
    if isinstance(cap, bool) or not isinstance(cap, int | float) or cap < 0:
        raise ConfigError('model.score_norm_cap', cap, 'a number >= 0 (0: the exact score)')
    return capped_score_builder(float(cap)) if cap > 0 else exact_score_fn


TARGETS: dict[str, TargetKind] = {
    'gaussian_field': TargetKind(GaussianField, field_from_config, _field_score_builder,
                                 'model.field_mean'),
    'gaussian_mixture': TargetKind(GaussianMixtureField, mixture_from_config,
                                   lambda config: mixture_score_fn, 'model.mixture_means'),
}


def target_names(gaussian_modes: bool | None = None) -> tuple[str, ...]:
    """The names of the registered targets (only those whose ``gaussian_modes`` is the given
    value, when given)."""
    return tuple(name for name, kind in TARGETS.items()
                 if gaussian_modes is None or kind.target_type.gaussian_modes == gaussian_modes)


def quoted(names: tuple[str, ...]) -> str:
    """'a' or 'b' (for messages)."""
    return ' or '.join(repr(n) for n in names)


def build_target(config, name: str) -> ExactTarget:
    """The target ``name`` of ``config.model``'s parameters in data space, checked to have one
    mean per channel of ``data.num_channels``."""
    kind = TARGETS[name]
    target = kind.from_config(config)
    channels = int(config.data.num_channels)
    if target.num_channels != channels:
        key = kind.means_field.split('.', 1)[1]
        raise ConfigError(kind.means_field, config.model[key],
                          f'one mean per channel (data.num_channels={channels})')
    return target


def score_target(config) -> ExactTarget | None:
    """The target whose exact score ``model.name`` selects; None for a network."""
    return build_target(config, config.model.name) if config.model.name in TARGETS else None


def data_target(config) -> ExactTarget | None:
    """The target ``data.dataset`` draws from; None when the data is not known exactly."""
    return build_target(config, config.data.dataset) if config.data.dataset in TARGETS else None


def experiment_target(config) -> ExactTarget | None:
    """The exact target of a sampling experiment: the one whose exact score it samples, else
    the one the network was trained on (``data.dataset``), else None."""
    return score_target(config) if config.model.name in TARGETS else data_target(config)


def has_exact_score(config) -> bool:
    """Whether ``model.name`` selects an exact score (no network, no checkpoint)."""
    return config.model.name in TARGETS


def check_known_distribution(config, mode: str) -> None:
    """ConfigError unless ``data.dataset`` is an exact target (a Frechet distance to the data
    distribution needs it; the score may be exact or a trained network)."""
    if config.data.dataset not in TARGETS:
        raise ConfigError('data.dataset', config.data.dataset,
                          f'{quoted(target_names())} for {mode} (the exact Frechet distance '
                          'needs the true distribution; the score may be exact or a trained '
                          'network)')
