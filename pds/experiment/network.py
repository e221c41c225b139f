"""Score networks as score models for the sampler: a registered flax model, its variables,
and score_sde's score-function wrapper for the configured SDE."""

from __future__ import annotations

import os
from typing import Any

import jax
from absl import logging

from pds.runtime.errors import ConfigError


def network_score_model(config, workdir: str | None = None) -> tuple[Any, Any, dict]:
    """(score_builder, variables, provenance): ``score_builder(sde, variables) ->
    score_fn(x, t)``; provenance (for metrics.json) names the checkpoint's path, step and
    source, or the random initialisation.

    Variables come from the newest step under ``<workdir>/checkpoints`` (a converted or
    trained checkpoint), or under ``<sampling.checkpoint_dir>/checkpoints`` when that is set
    (an exported network, e.g. the committed photo network). A workdir without one is a
    ConfigError (a mistyped --workdir would otherwise sample a random network) unless
    ``sampling.allow_random_init``; without a workdir (programmatic use: benchmarks, tests)
    the network is freshly initialised from ``config.seed``, with a warning.
    """
    from models.registry import create_model, init_variables
    from pds.method.score import get_score_fn

    model = create_model(config)
    export = config.sampling.get('checkpoint_dir', '')
    if export:
        if not os.path.isdir(os.path.join(export, 'checkpoints')):
            raise ConfigError('sampling.checkpoint_dir', export, 'a folder holding a '
                              'checkpoints/ folder of sampling variables (an export, or a '
                              '--mode=train workdir)')
        workdir = export
    ckpt_dir = os.path.join(workdir, 'checkpoints') if workdir else None
    if ckpt_dir and os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir):
        from pds.storage.sampling_checkpoints import read_metadata, restore_variables

        variables = restore_variables(ckpt_dir, config)
        meta = read_metadata(ckpt_dir)
        provenance = {'path': os.path.abspath(ckpt_dir), 'step': meta.get('step'),
                      'source': meta.get('source', 'unknown')}
    else:
        if ckpt_dir and not config.sampling.get('allow_random_init', False):
            raise ConfigError('--workdir', workdir, f'a workdir with a sampling checkpoint '
                              f'of {config.model.name} under {ckpt_dir} (--mode=convert or '
                              '--mode=train writes one); or set '
                              '--config.sampling.allow_random_init=True to sample a freshly '
                              'initialised network')
        logging.warning('no checkpoint under %s: sampling from a freshly initialised %s',
                        ckpt_dir, config.model.name)
        variables = init_variables(config, jax.random.key(config.seed))
        provenance = {'path': None, 'step': None,
                      'source': f'random initialisation (seed {config.seed})'}
    continuous = bool(config.training.continuous)

    def builder(sde, v):
        return get_score_fn(sde, model, v, train=False, continuous=continuous)

    return builder, variables, provenance
