"""Training losses of score-based models, with score_sde's semantics.

Every loss here is a *per-example* function: ``loss_fn(variables, x, keys) -> (B,)`` with
``x`` an NHWC batch and ``keys`` one PRNG key per example. Example b draws everything it needs
(its time or noise level, its Gaussian noise, its dropout masks) from ``keys[b]`` alone, so a
loss does not depend on how the batch is split over devices. The training loss is the mean of
the per-example losses over the global batch.

With ``reduce(v) = mean_d v_d`` (``reduce_mean``) or ``reduce(v) = 1/2 sum_d v_d`` (otherwise),
z ~ N(0, I), and s_theta the score model:

* Continuous DSM (VE, VP, subVP), t ~ U(eps, T), x_t = mean(x, t) + std(t) z::

      l = reduce((std s_theta(x_t, t) + z)^2)                       (score_sde's default)
      l = reduce((s_theta(x_t, t) + z / std)^2) g(t)^2              (likelihood_weighting)

* SMLD (discrete VE), n ~ U{0..N-1}, sigma_n the descending ladder (n = 0 is sigma_max),
  x_n = x + sigma_n z, the network called with label n::

      l = reduce((s_theta(x_n, n) + z / sigma_n)^2) sigma_n^2

* DDPM (discrete VP), n ~ U{0..N-1}, x_n = sqrt(abar_n) x + sqrt(1 - abar_n) z, the network
  predicting the noise::

      l = reduce((eps_theta(x_n, n) - z)^2)

The per-example draws are :func:`draw_time` / :func:`draw_label` and :func:`draw_noise`;
tests recompute every loss in numpy from them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pds.method.sde import SDE, VESDE, VPSDE, bcast, subVPSDE
from pds.runtime.errors import ConfigError

Array = jax.Array
LossFn = Callable[[Any, Array, Array], Array]

TIME_TAG, NOISE_TAG, DROPOUT_TAG = 0, 1, 2  # fold_in tags of an example's three draws
DEFAULT_EPS = 1e-5  # score_sde's smallest training time


def _reducer(reduce_mean: bool) -> Callable[[Array], Array]:
    """Per-example reduction over data dims: mean, or 1/2 sum (score_sde's two choices)."""
    if reduce_mean:
        return lambda v: jnp.mean(v.reshape(v.shape[0], -1), axis=-1)
    return lambda v: 0.5 * jnp.sum(v.reshape(v.shape[0], -1), axis=-1)


def draw_time(keys: Array, eps: float, T: float = 1.0) -> Array:
    """t_b ~ U(eps, T) from ``keys[b]`` (tag TIME_TAG); shape (B,)."""
    one = lambda k: jax.random.uniform(jax.random.fold_in(k, TIME_TAG), (), jnp.float32,
                                       minval=eps, maxval=T)
    return jax.vmap(one)(keys)


def draw_label(keys: Array, n: int) -> Array:
    """n_b ~ U{0, ..., n - 1} from ``keys[b]`` (tag TIME_TAG); shape (B,), int32."""
    one = lambda k: jax.random.randint(jax.random.fold_in(k, TIME_TAG), (), 0, n, jnp.int32)
    return jax.vmap(one)(keys)


def draw_noise(keys: Array, shape: tuple[int, ...]) -> Array:
    """z_b ~ N(0, I) of ``shape`` (one example) from ``keys[b]`` (tag NOISE_TAG)."""
    one = lambda k: jax.random.normal(jax.random.fold_in(k, NOISE_TAG), shape, jnp.float32)
    return jax.vmap(one)(keys)


def dropout_keys(keys: Array) -> Array:
    """The dropout key of each example (tag DROPOUT_TAG)."""
    return jax.vmap(lambda k: jax.random.fold_in(k, DROPOUT_TAG))(keys)


def per_example(fn: Callable[[Array, Array, Array], Array]
                ) -> Callable[[Array, Array, Array], Array]:
    """Apply ``fn(x, label, rng)`` to every example on its own (a batch of one, vmapped).

    Each example gets its own dropout key, so the dropout masks of example b do not depend on
    the rest of the batch. Networks normalise per example (GroupNorm), so vmapping over
    batches of one computes the same function as one batched call.
    """

    def one(x, label, rng):
        return fn(x[None], label[None], rng)[0]

    return jax.vmap(one)


def sde_loss(sde: SDE, score_fn: Callable, reduce_mean: bool = True,
             likelihood_weighting: bool = False, eps: float = DEFAULT_EPS) -> LossFn:
    """Continuous denoising score matching; ``score_fn(variables)(x, t, rng) -> score``."""
    reduce = _reducer(reduce_mean)

    def loss_fn(variables, x, keys):
        t = draw_time(keys, eps, sde.T)
        z = draw_noise(keys, x.shape[1:])
        mean, std = sde.marginal_prob(x, t)
        x_t = mean + bcast(std, x) * z
        score = per_example(score_fn(variables))(x_t, t, dropout_keys(keys))
        if not likelihood_weighting:
            return reduce(jnp.square(score * bcast(std, x) + z))
        g2 = sde.sde(jnp.zeros_like(x), t)[1] ** 2
        return reduce(jnp.square(score + z / bcast(std, x))) * g2

    return loss_fn


def smld_loss(sde: VESDE, model_fn: Callable, reduce_mean: bool = False) -> LossFn:
    """SMLD (NCSN) loss on the descending sigma ladder; ``model_fn(variables)(x, n, rng)``."""
    reduce = _reducer(reduce_mean)
    sigmas = sde.discrete_sigmas[::-1]

    def loss_fn(variables, x, keys):
        n = draw_label(keys, sde.N)
        sigma = sigmas[n]
        noise = bcast(sigma, x) * draw_noise(keys, x.shape[1:])
        score = per_example(model_fn(variables))(x + noise, n, dropout_keys(keys))
        target = -noise / bcast(sigma**2, x)
        return reduce(jnp.square(score - target)) * sigma**2

    return loss_fn


def ddpm_loss(sde: VPSDE, model_fn: Callable, reduce_mean: bool = True) -> LossFn:
    """DDPM noise-prediction loss on the discrete VP ladder; ``model_fn(variables)(x, n, rng)``."""
    reduce = _reducer(reduce_mean)
    abar = sde.alphas_cumprod

    def loss_fn(variables, x, keys):
        n = draw_label(keys, sde.N)
        z = draw_noise(keys, x.shape[1:])
        x_n = bcast(jnp.sqrt(abar[n]), x) * x + bcast(jnp.sqrt(1.0 - abar[n]), x) * z
        pred = per_example(model_fn(variables))(x_n, n.astype(jnp.float32), dropout_keys(keys))
        return reduce(jnp.square(pred - z))

    return loss_fn


def get_loss_fn(sde: SDE, model: nn.Module, train: bool, reduce_mean: bool = False,
                continuous: bool = True, likelihood_weighting: bool = False,
                eps: float = DEFAULT_EPS) -> LossFn:
    """score_sde's choice of loss: DSM when ``continuous``, else SMLD (VE) or DDPM (VP).

    ``train`` turns dropout on (each example with its own key); evaluation passes False.
    """
    from pds.method.score import get_model_fn, get_score_fn

    if continuous:
        score = lambda v: get_score_fn(sde, model, v, train=train, continuous=True)
        return sde_loss(sde, score, reduce_mean, likelihood_weighting, eps)
    if likelihood_weighting:
        raise ConfigError('training.likelihood_weighting', True,
                          'False for discrete training (training.continuous=False)')
    model_fn = lambda v: get_model_fn(model, v, train=train)
    if isinstance(sde, VESDE):
        return smld_loss(sde, model_fn, reduce_mean)
    if isinstance(sde, VPSDE) and not isinstance(sde, subVPSDE):
        return ddpm_loss(sde, model_fn, reduce_mean)
    raise ConfigError('training.continuous', False,
                      'True for training.sde=subvpsde (discrete training exists for vesde '
                      '(SMLD) and vpsde (DDPM) only)')


def loss_from_config(config, sde: SDE, model: nn.Module, train: bool) -> LossFn:
    """:func:`get_loss_fn` with ``config.training`` fields."""
    t = config.training
    return get_loss_fn(sde, model, train, bool(t.reduce_mean), bool(t.continuous),
                       bool(t.likelihood_weighting))
