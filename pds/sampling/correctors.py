"""Correctors: Langevin MCMC steps at fixed t, selected by name.

Preconditioned Langevin dx = M M^T grad log p dt + sqrt(2) M dW keeps p stationary for any
invertible M (PDS), so both correctors take g' = M M^T score and n' = M z:

- langevin: eps = 2 a_t (snr * mean_b ||n'_b|| / mean_b ||g'_b||)^2, means over the GLOBAL
  batch (the reference's signal-to-noise step rule);
- ald (annealed Langevin dynamics): eps_b = 2 a_t (snr * sigma_b(t))^2.

Then x_mean = x + eps g' and x = x_mean + sqrt(2 eps) n', repeated n_steps_each times.
"""

from __future__ import annotations

import jax.numpy as jnp

from pds.method.sde import bcast
from pds.runtime.registry import Registry
from pds.sampling.context import StepEnv, per_example_norm

_REGISTRY = Registry('sampling.corrector')
register_corrector = _REGISTRY.register
get_corrector = _REGISTRY.get
corrector_names = _REGISTRY.names


@register_corrector('none')
def no_corrector(env: StepEnv, x, t, index, noise):
    return x, x


def langevin_loop(env: StepEnv, x, t, noise, step_size_fn):
    x_mean = x
    for k in range(env.n_steps):  # n_steps is a small static count
        grad = env.drift(env.score_fn(x, t))
        z = env.noise_term(noise(k))
        eps = step_size_fn(grad, z)
        x_mean = x + bcast(eps, x) * grad
        x = x_mean + bcast(jnp.sqrt(2.0 * eps), x) * z
    return x, x_mean


@register_corrector('langevin')
def langevin(env: StepEnv, x, t, index, noise):
    alpha = env.langevin_alpha(index)

    def step_size(grad, z):
        ratio = env.batch_mean(per_example_norm(z)) / env.batch_mean(per_example_norm(grad))
        return jnp.broadcast_to(2.0 * alpha * (env.snr * ratio) ** 2, t.shape)

    return langevin_loop(env, x, t, noise, step_size)


@register_corrector('ald')
def annealed_langevin(env: StepEnv, x, t, index, noise):
    alpha = env.langevin_alpha(index)
    _, std = env.sde.marginal_prob(x, t)
    return langevin_loop(env, x, t, noise, lambda grad, z: 2.0 * alpha * (env.snr * std) ** 2)
