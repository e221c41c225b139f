"""Forward SDEs of score-based generative modelling (Song et al. 2021), score_sde semantics.

All SDEs run on t in [0, T] with T = 1 and act on NHWC batches; ``t`` has shape (B,).

- VE:    dx = sqrt(d sigma^2(t)/dt) dw,  sigma(t) = sigma_min (sigma_max / sigma_min)^t
- VP:    dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw,  beta(t) = beta_0 + t (beta_1 - beta_0)
- subVP: dx = -1/2 beta(t) x dt + sqrt(beta(t) (1 - exp(-2 int_0^t beta))) dw

``discretize`` gives the reverse-diffusion discretisation x_{i+1} = x_i + f_i + G_i z_i on the
discrete ladder of N levels (SMLD for VE, DDPM for VP, Euler for subVP). The ladder index used
by the discrete formulas is ``floor(t (N - 1) / T)`` unless the caller passes it explicitly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

Array = jnp.ndarray
ScoreFn = Callable[[Array, Array], Array]


def bcast(v: Array, x: Array) -> Array:
    """Broadcast a per-example vector (B,) (or a scalar) against a batch x (B, ...)."""
    v = jnp.asarray(v)
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def _ladder_index(t: Array, n: int, index: Array | None) -> Array:
    if index is not None:
        return jnp.asarray(index, jnp.int32)
    return (t * (n - 1)).astype(jnp.int32)


class SDE:
    """Base class. Subclasses define ``sde``, ``marginal_prob``, ``prior_std``, ``discretize``."""

    N: int
    T: float = 1.0

    def sde(self, x: Array, t: Array) -> tuple[Array, Array]:
        """Drift f(x, t) (NHWC) and diffusion g(t) (B,)."""
        raise NotImplementedError

    def marginal_prob(self, x: Array, t: Array) -> tuple[Array, Array]:
        """Mean (NHWC) and std (B,) of p_0t(x(t) | x(0) = x)."""
        raise NotImplementedError

    @property
    def prior_std(self) -> float:
        """Standard deviation of the (zero-mean, isotropic) prior p_T."""
        raise NotImplementedError

    def prior_sampling(self, z: Array) -> Array:
        """Map standard normal noise ``z`` to a prior sample."""
        return self.prior_std * z

    def prior_logp(self, z: Array) -> Array:
        d = np.prod(z.shape[1:])
        s2 = self.prior_std**2
        return -0.5 * d * np.log(2 * np.pi * s2) - jnp.sum(z**2, axis=(1, 2, 3)) / (2 * s2)

    def discretize(self, x: Array, t: Array, index: Array | None = None) -> tuple[Array, Array]:
        """Euler discretisation: f = drift dt, G = g sqrt(dt), dt = T / N."""
        drift, diffusion = self.sde(x, t)
        dt = self.T / self.N
        return drift * dt, diffusion * np.sqrt(dt)

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE:
        return ReverseSDE(self, score_fn, probability_flow)


@dataclasses.dataclass(frozen=True)
class ReverseSDE:
    """Reverse-time SDE dx = [f - c g^2 score] dt + (1 - pf) g dw_bar, c = 1/2 if pf else 1."""

    forward: SDE
    score_fn: ScoreFn
    probability_flow: bool = False

    @property
    def N(self) -> int:  # noqa: N802 (the SDE attribute name)
        return self.forward.N

    def _coef(self) -> float:
        return 0.5 if self.probability_flow else 1.0

    def sde(self, x: Array, t: Array) -> tuple[Array, Array]:
        drift, diffusion = self.forward.sde(x, t)
        score = self.score_fn(x, t)
        drift = drift - bcast(diffusion**2, x) * score * self._coef()
        return drift, jnp.zeros_like(diffusion) if self.probability_flow else diffusion

    def discretize(self, x: Array, t: Array, index: Array | None = None) -> tuple[Array, Array]:
        """Reverse discretisation: f_rev = f - c G^2 score, G_rev = (1 - pf) G."""
        f, G = self.forward.discretize(x, t, index)
        rev_f = f - bcast(G**2, x) * self.score_fn(x, t) * self._coef()
        return rev_f, jnp.zeros_like(G) if self.probability_flow else G


@dataclasses.dataclass(frozen=True)
class VESDE(SDE):
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    N: int = 1000

    @property
    def discrete_sigmas(self) -> Array:
        """Geometric ladder of N noise levels from sigma_min to sigma_max."""
        return jnp.exp(jnp.linspace(np.log(self.sigma_min), np.log(self.sigma_max), self.N))

    def sigma(self, t: Array) -> Array:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def sde(self, x, t):
        g = self.sigma(t) * np.sqrt(2 * (np.log(self.sigma_max) - np.log(self.sigma_min)))
        return jnp.zeros_like(x), g

    def marginal_prob(self, x, t):
        return x, self.sigma(t)

    @property
    def prior_std(self) -> float:
        return float(self.sigma_max)

    def discretize(self, x, t, index=None):
        """SMLD: f = 0, G = sqrt(sigma_i^2 - sigma_{i-1}^2) with sigma_{-1} = 0."""
        i = _ladder_index(t, self.N, index)
        sigmas = self.discrete_sigmas
        sigma = sigmas[i]
        prev = jnp.where(i == 0, 0.0, sigmas[jnp.maximum(i - 1, 0)])
        G = jnp.sqrt(sigma**2 - prev**2) * jnp.ones_like(t)
        return jnp.zeros_like(x), G


@dataclasses.dataclass(frozen=True)
class VPSDE(SDE):
    beta_min: float = 0.1
    beta_max: float = 20.0
    N: int = 1000

    @property
    def discrete_betas(self) -> Array:
        return jnp.linspace(self.beta_min / self.N, self.beta_max / self.N, self.N)

    @property
    def alphas(self) -> Array:
        return 1.0 - self.discrete_betas

    @property
    def alphas_cumprod(self) -> Array:
        return jnp.cumprod(self.alphas)

    def beta(self, t: Array) -> Array:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_mean_coeff(self, t: Array) -> Array:
        """log of the mean coefficient: -t^2 (beta_1 - beta_0) / 4 - t beta_0 / 2."""
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def sde(self, x, t):
        beta = self.beta(t)
        return -0.5 * bcast(beta, x) * x, jnp.sqrt(beta)

    def marginal_prob(self, x, t):
        lmc = self.log_mean_coeff(t)
        return bcast(jnp.exp(lmc), x) * x, jnp.sqrt(1.0 - jnp.exp(2.0 * lmc))

    @property
    def prior_std(self) -> float:
        return 1.0

    def discretize(self, x, t, index=None):
        """DDPM: f = (sqrt(alpha_i) - 1) x, G = sqrt(beta_i)."""
        i = _ladder_index(t, self.N, index)
        beta = self.discrete_betas[i] * jnp.ones_like(t)
        alpha = self.alphas[i] * jnp.ones_like(t)
        f = bcast(jnp.sqrt(alpha), x) * x - x
        return f, jnp.sqrt(beta)


@dataclasses.dataclass(frozen=True)
class subVPSDE(VPSDE):  # noqa: N801 (score_sde's name)
    """sub-VP SDE; shares VP's beta schedule and its discrete alphas (used by the correctors)."""

    def sde(self, x, t):
        beta = self.beta(t)
        discount = 1.0 - jnp.exp(
            -2.0 * self.beta_min * t - (self.beta_max - self.beta_min) * t**2
        )
        return -0.5 * bcast(beta, x) * x, jnp.sqrt(beta * discount)

    def marginal_prob(self, x, t):
        lmc = self.log_mean_coeff(t)
        return bcast(jnp.exp(lmc), x) * x, 1.0 - jnp.exp(2.0 * lmc)

    def discretize(self, x, t, index=None):
        return SDE.discretize(self, x, t, index)


SDE_NAMES = ('vesde', 'vpsde', 'subvpsde')


def sde_from_config(config, num_scales: int | None = None) -> SDE:
    """``config.training.sde`` with ``num_scales`` levels (default ``model.num_scales``)."""
    from pds.runtime.errors import ConfigError, check_choice

    name = config.training.sde.lower()
    check_choice('training.sde', name, SDE_NAMES)
    n = int(num_scales or config.model.num_scales)
    m = config.model
    if name == 'vesde':
        return VESDE(float(m.sigma_min), float(m.sigma_max), n)
    cls = VPSDE if name == 'vpsde' else subVPSDE
    if n <= float(m.beta_max):
        raise ConfigError('sampling.steps', n, f'more than model.beta_max={m.beta_max} '
                          'iterations for a VP/subVP SDE (its discrete betas beta_max / N '
                          'must stay below 1)')
    return cls(float(m.beta_min), float(m.beta_max), n)


def base_sampling_eps(sde: SDE) -> float:
    """score_sde's smallest sampling time: 1e-5 for VE, 1e-3 for VP and subVP."""
    return 1e-5 if isinstance(sde, VESDE) else 1e-3


def scale_and_sigma(sde: SDE, t: Array) -> tuple[Array, Array]:
    """(alpha(t), sigma(t)) of the marginal x_t = alpha(t) (x_0 + sigma(t) z): alpha the mean
    coefficient and sigma = std / alpha the noise-to-signal ratio (VE: alpha = 1, sigma(t);
    VP: sigma^2 = 1 / alpha^2 - 1). EDM's x-hat = x / alpha has noise level sigma. ``t`` (B,)
    or scalar; returns arrays of its shape."""
    t = jnp.asarray(t)
    alpha, std = sde.marginal_prob(jnp.ones_like(t), t)
    return alpha, std / alpha
