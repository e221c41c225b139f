"""Predictors: one reverse-time step from t_i to t_{i+1}, selected by name.

With a preconditioner (M, as in :mod:`pds.method.precondition`) the reverse drift is multiplied by
M M^T and the noise by M, as the PDS reference does for reverse diffusion; here the same rule
also covers Euler-Maruyama. Ancestral sampling ignores M (as the reference does).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from pds.method.sde import VESDE, VPSDE, bcast, subVPSDE
from pds.runtime.errors import ConfigError
from pds.runtime.registry import Registry
from pds.sampling.context import StepEnv

_REGISTRY = Registry('sampling.predictor')
register_predictor = _REGISTRY.register
get_predictor = _REGISTRY.get
predictor_names = _REGISTRY.names


@register_predictor('none')
def no_predictor(env: StepEnv, x, t, index, noise):
    return x, x


@register_predictor('euler_maruyama')
def euler_maruyama(env: StepEnv, x, t, index, noise):
    """x_mean = x + M M^T f_rev dt (dt = -1/N); x = x_mean + g sqrt(-dt) M z."""
    dt = -1.0 / env.sde.N
    drift, diffusion = env.reverse.sde(x, t)
    x_mean = x + env.drift(drift) * dt
    return x_mean + bcast(diffusion * np.sqrt(-dt), x) * env.noise_term(noise(0)), x_mean


@register_predictor('reverse_diffusion')
def reverse_diffusion(env: StepEnv, x, t, index, noise):
    """x_mean = x - M M^T f_rev; x = x_mean + G M z."""
    f, G = env.reverse.discretize(x, t, index)
    x_mean = x - env.drift(f)
    return x_mean + bcast(G, x) * env.noise_term(noise(0)), x_mean


@register_predictor('ancestral_sampling')
def ancestral_sampling(env: StepEnv, x, t, index, noise):
    """SMLD (VE) or DDPM (VP) ancestral step on the discrete ladder; no preconditioning."""
    sde = env.sde
    score = env.score_fn(x, t)
    z = noise(0)
    if isinstance(sde, VESDE):
        sigmas = sde.discrete_sigmas
        sigma = sigmas[index]
        prev = jnp.where(index == 0, 0.0, sigmas[jnp.maximum(index - 1, 0)])
        x_mean = x + score * (sigma**2 - prev**2)
        std = jnp.sqrt(prev**2 * (sigma**2 - prev**2) / sigma**2)
        return x_mean + std * z, x_mean
    if isinstance(sde, VPSDE) and not isinstance(sde, subVPSDE):
        beta = sde.discrete_betas[index]
        x_mean = (x + beta * score) / jnp.sqrt(1.0 - beta)
        return x_mean + jnp.sqrt(beta) * z, x_mean
    raise ConfigError('sampling.predictor', 'ancestral_sampling',
                      'training.sde vesde or vpsde (no ancestral step is defined for subvpsde)')
