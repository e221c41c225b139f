"""Predictors: one reverse-time step from t_i to t_{i+1}, selected by name.

With a preconditioner M (:mod:`pds.method.precondition`) the reverse-SDE predictors take one
of two forms (``sampling.pds.predictor_form``), for forward drift f, diffusion g and score s:

- 'reference' (the PDS reference): the whole reverse drift is multiplied by M M^T,
  dx = M M^T [f - g^2 s] dt + g M dw. It does NOT keep the marginals p_t when M M^T != I
  (one Fourier mode with gain 1.25 ends at 0.74 of its variance: measured by the float64
  recursion of tests/pds/analytic/test_moments.py::test_one_mode_predictor_only).
- 'invariant': dx = [f - 1/2 g^2 (I + M M^T) s] dt + g M dw, the reverse SDE whose noise is
  g M and whose marginals are the forward ones (its Fokker-Planck equation is the forward one
  run backwards).

Both reduce to the plain predictor for M = I. Ancestral sampling ignores M (as the reference
does).
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


def invariant_score_term(env: StepEnv, x, t, g2):
    """1/2 g^2 (I + M M^T) s(x, t), g2 of shape (B,)."""
    score = env.score_fn(x, t)
    return 0.5 * bcast(g2, x) * (score + env.drift(score))


@register_predictor('euler_maruyama')
def euler_maruyama(env: StepEnv, x, t, index, noise):
    """score_sde's step dt = -1/N (its Euler-Maruyama assumes the uniform grid of N points):
    reference x_mean = x + M M^T [f - g^2 s] dt, invariant x_mean = x + [f - 1/2 g^2
    (I + M M^T) s] dt; then x = x_mean + g sqrt(-dt) M z."""
    dt = -1.0 / env.sde.N
    if env.predictor_form == 'invariant':
        f, diffusion = env.sde.sde(x, t)
        x_mean = x + (f - invariant_score_term(env, x, t, diffusion**2)) * dt
    else:
        drift, diffusion = env.reverse.sde(x, t)
        x_mean = x + env.drift(drift) * dt
    return x_mean + bcast(diffusion * np.sqrt(-dt), x) * env.noise_term(noise(0)), x_mean


@register_predictor('reverse_diffusion')
def reverse_diffusion(env: StepEnv, x, t, index, noise):
    """On the discrete ladder (f, G of ``sde.discretize``): reference x_mean = x - M M^T
    [f - G^2 s], invariant x_mean = x - f + 1/2 G^2 (I + M M^T) s; then x = x_mean + G M z."""
    if env.predictor_form == 'invariant':
        f, G = env.sde.discretize(x, t, index)
        x_mean = x - f + invariant_score_term(env, x, t, G**2)
    else:
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
