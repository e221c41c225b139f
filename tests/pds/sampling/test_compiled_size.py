"""The compiled sampler holds its scan body once: the network's convolutions appear once per
score call of one iteration, whatever the number of iterations."""

from __future__ import annotations

import re

import jax
import pytest

from configs.tiny import ncsnpp_train
from pds.experiment.assemble import experiment_from_config
from pds.method.precondition import Identity
from pds.runtime.mesh import data_mesh, replicate
from pds.sampling.grid import sampling_schedule
from pds.sampling.sampler import build_sampler
from pds.sampling.solver import solver_from_config

pytestmark = pytest.mark.slow  # three compiles of the tiny NCSN++


def _convolutions(hlo: str) -> int:
    return len(re.findall(r' convolution\(', hlo))


def test_sampler_compiles_the_network_once_per_score_call_of_an_iteration():
    config = ncsnpp_train.get_config()
    exp = experiment_from_config(config)
    x = jax.numpy.zeros((2, *exp.image_shape))
    t = jax.numpy.full((2,), 0.5)
    forward = jax.jit(lambda v, x, t: exp.score_builder(exp.sde, v)(x, t))
    per_call = _convolutions(forward.lower(exp.variables, x, t).compile().as_text())
    assert per_call > 0
    mesh = data_mesh()
    counts = []
    for steps in (2, 9):
        config.sampling.steps = steps
        sde, grid = sampling_schedule(config)
        assert grid.num_steps == steps
        sampler = build_sampler(sde, grid, exp.score_builder, exp.image_shape, 2, mesh,
                                solver_from_config(config, sde))
        sampler.compile(replicate(exp.variables, mesh), replicate(Identity(), mesh))
        counts.append(_convolutions(sampler.hlo_text()))
    # reverse diffusion + Langevin: two score calls per iteration, none unrolled
    assert counts == [2 * per_call, 2 * per_call], (counts, per_call)
