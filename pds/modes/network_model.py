"""Score networks as score models for the sampler: a registered flax model, its variables,
and score_sde's score-function wrapper for the configured SDE."""

from __future__ import annotations

import os
from typing import Any

import jax
from absl import logging


def network_score_model(config, workdir: str | None = None) -> tuple[Any, Any]:
    """(score_builder, variables): ``score_builder(sde, variables) -> score_fn(x, t)``.

    Variables come from ``<workdir>/checkpoints`` when a converted or trained checkpoint is
    there; otherwise the network is freshly initialised from ``config.seed`` (a warning says so).
    """
    from models.registry import create_model, init_variables
    from pds.method.score import get_score_fn

    model = create_model(config)
    ckpt_dir = os.path.join(workdir, 'checkpoints') if workdir else None
    if ckpt_dir and os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir):
        from pds.storage.sampling_checkpoints import restore_variables

        variables = restore_variables(ckpt_dir, config)
    else:
        logging.warning('no checkpoint under %s: sampling from a freshly initialised %s',
                        ckpt_dir, config.model.name)
        variables = init_variables(config, jax.random.key(config.seed))
    continuous = bool(config.training.continuous)

    def builder(sde, v):
        return get_score_fn(sde, model, v, train=False, continuous=continuous)

    return builder, variables
