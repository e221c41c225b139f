"""EDM's samplers (Karras et al. 2022): Heun's method on the probability-flow ODE in noise
level (Algorithm 1, ``sampling.method='edm_heun'``) and its stochastic form with churn
(Algorithm 2, ``sampling.method='edm_stochastic'``).

In x-hat with noise level sigma (:mod:`pds.sampling.denoiser`) the ODE is
dx-hat / dsigma = (x-hat - D(x-hat; sigma)) / sigma, and one step from sigma to sigma_n is

    d  = (x-hat - D(x-hat; sigma)) / sigma,      x' = x-hat + (sigma_n - sigma) d,
    d' = (x' - D(x'; sigma_n)) / sigma_n,        x-hat_n = x-hat + (sigma_n - sigma) (d + d') / 2,

with the Euler step alone when sigma_n = 0 (the last interval, which ends at D): two score
evaluations per step, one in the last; second order. Use it with ``sampling.grid='karras'``
(EDM's rho-7 levels) or any other grid. Deterministic after the prior draw; no
preconditioner may enter it.

The stochastic sampler first raises each step's noise level ("churn", fields
``sampling.edm.*``), then takes the same Heun step from the raised level sigma-hat:

    gamma = min(S_churn / N, sqrt(2) - 1) if S_tmin <= sigma <= S_tmax else 0,
    sigma-hat = sigma (1 + gamma),    x-hat <- x-hat + sqrt(sigma-hat^2 - sigma^2) S_noise z,

z the example's own draw (slot 0 of the iteration: the same samples on any device count).
In x-hat the marginal at level sigma is x_0 + sigma z for every SDE here, so the fresh noise
carries x-hat from level sigma to sigma-hat; the denoiser at sigma-hat is evaluated at its time
t-hat = t(sigma-hat) (:func:`pds.sampling.denoiser.time_of_sigma`, closed form; above sigma(T)
t-hat > T, as EDM evaluates its network above sigma_max), at alpha(t-hat), and sigma-hat is
taken as sigma(t-hat). N is the grid's number of steps, fixed when the solver is built from the
config (:func:`pds.sampling.grid.num_iterations`: ``sampling.steps`` or ``speed_up``). The
NFE per step is edm_heun's, and with S_churn = 0 the sampler is edm_heun, bit for bit. The
churn noise must stay white: a preconditioner colouring it changes the distribution the
sampler produces, so ``sampling.precondition`` must be 'none'.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from pds.method.sde import SDE, bcast, scale_and_sigma
from pds.runtime.errors import ConfigError
from pds.sampling.context import Context
from pds.sampling.declaration import ODE_CORRECTOR_REASON, SolverSpec
from pds.sampling.denoiser import denoise, levels, time_of_sigma
from pds.sampling.grid import Interval, num_iterations
from pds.sampling.solver import register_solver

Array = jnp.ndarray

# sampling.edm defaults: EDM's, except S_tmax (EDM: inf; config floats must be finite, and
# 1e6 is above every sigma_max here: VE 1348 at most, VP about 152). EDM's README samples
# ImageNet-64 with 256 steps and s_churn=40, s_tmin=0.05, s_tmax=50, s_noise=1.003.
CONFIG_FIELDS = {'edm': {'s_churn': 0.0, 's_tmin': 0.0, 's_tmax': 1e6, 's_noise': 1.0}}
EDM_DEFAULTS = CONFIG_FIELDS['edm']


def heun_step(ctx: Context, x_hat: Array, a: Array, s: Array, t: Array, a_n: Array,
              s_n: Array, interval: Interval) -> Array:
    """x-hat_n of one Heun step from level s (alpha a, time t) to s_n (alpha a_n, time
    interval.t_next), Euler alone into the data (module docstring); each (B,)."""
    t_n = ctx.times(interval.t_next)  # outside the cond: the same compiled rounding as before
    d = (x_hat - denoise(ctx, x_hat, a, s, t)) / bcast(s, x_hat)
    euler = x_hat + bcast(s_n - s, x_hat) * d

    def heun():
        d_n = (euler - denoise(ctx, euler, a_n, s_n, t_n)) / bcast(s_n, x_hat)
        return x_hat + bcast(s_n - s, x_hat) * 0.5 * (d + d_n)

    return jax.lax.cond(interval.t_next <= 0, lambda: euler, heun)


def heun_nfe(interval: Interval):
    """Score evaluations of :func:`heun_step`: 2, or 1 into the data."""
    return jnp.where(interval.t_next <= 0, 1, 2).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class EDMHeun:
    def init(self, ctx: Context, x):
        return x

    def step(self, ctx: Context, x, interval: Interval):
        a, s, a_n, s_n, _ = levels(ctx, interval)
        x_hat = x / bcast(a, x)
        t = ctx.times(interval.t)
        return bcast(a_n, x) * heun_step(ctx, x_hat, a, s, t, a_n, s_n, interval)

    def step_nfe(self, interval: Interval):
        return heun_nfe(interval)

    def output(self, ctx: Context, x):
        return x

    def summary(self) -> dict[str, Any]:
        return {'method': 'edm_heun'}


EDM_PAPER = 'EDM, Karras et al. 2022 (arXiv 2206.00364), github.com/NVlabs/edm'


def _heun_nfe(sampling) -> tuple[int, int]:
    """NFE(N) = 2 N - 1: two evaluations per step, one in the last (Euler into the data)."""
    return 2, -1


@register_solver(SolverSpec(
    name='edm_heun', kind='ODE', preconditioner='corrector',
    preconditioner_reason=ODE_CORRECTOR_REASON, noise='none after the prior draw',
    moments='affine', grid='karras', nfe=_heun_nfe, nfe_text='2N - 1',
    reference=f'{EDM_PAPER}, Algorithm 1'))
def from_config(config, sde: SDE) -> EDMHeun:
    return EDMHeun()


@dataclasses.dataclass(frozen=True)
class EDMStochastic:
    """EDM's Algorithm 2 (module docstring); the state is x."""

    num_steps: int  # N of gamma = min(S_churn / N, sqrt(2) - 1)
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = EDM_DEFAULTS['s_tmax']
    s_noise: float = 1.0

    @property
    def gamma(self) -> float:
        """The churn of a step inside [S_tmin, S_tmax]: min(S_churn / N, sqrt(2) - 1)."""
        return min(self.s_churn / self.num_steps, math.sqrt(2.0) - 1.0)

    def init(self, ctx: Context, x):
        return x

    def step(self, ctx: Context, x, interval: Interval):
        a, s, a_n, s_n, _ = levels(ctx, interval)
        t = ctx.times(interval.t)
        churn = (s >= self.s_tmin) & (s <= self.s_tmax) & (self.gamma > 0)
        t_up = time_of_sigma(ctx.sde, s * (1.0 + self.gamma)).astype(t.dtype)
        t_hat = jnp.where(churn, t_up, t)
        a_up, s_up = scale_and_sigma(ctx.sde, t_hat)
        a_hat, s_hat = jnp.where(churn, a_up, a), jnp.where(churn, s_up, s)
        scale = jnp.sqrt(jnp.maximum(s_hat**2 - s**2, 0.0)) * self.s_noise
        x_hat = x / bcast(a, x) + bcast(scale, x) * ctx.noise(interval, 0)
        return bcast(a_n, x) * heun_step(ctx, x_hat, a_hat, s_hat, t_hat, a_n, s_n, interval)

    def step_nfe(self, interval: Interval):
        return heun_nfe(interval)

    def output(self, ctx: Context, x):
        return x

    def summary(self) -> dict[str, Any]:
        return {'method': 'edm_stochastic', 's_churn': self.s_churn, 's_tmin': self.s_tmin,
                's_tmax': self.s_tmax, 's_noise': self.s_noise, 'gamma': self.gamma,
                'num_steps': self.num_steps}


def edm_fields(config) -> dict[str, float]:
    """``sampling.edm``'s four numbers (EDM_DEFAULTS for a missing block or field), validated:
    ConfigError naming the field unless each is a finite number, s_churn >= 0, s_noise > 0
    and 0 <= s_tmin <= s_tmax."""
    block = config.sampling.get('edm', None) or {}
    values = {name: block.get(name, default) for name, default in EDM_DEFAULTS.items()}
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ConfigError(f'sampling.edm.{name}', v, 'a finite number')
    v = {name: float(x) for name, x in values.items()}
    if v['s_churn'] < 0:
        raise ConfigError('sampling.edm.s_churn', v['s_churn'], 'a number >= 0 (0: no churn, '
                          "edm_heun's steps; EDM samples ImageNet-64 with 40)")
    if v['s_noise'] <= 0:
        raise ConfigError('sampling.edm.s_noise', v['s_noise'], 'a number > 0 (the churn '
                          "noise's scale; 1: Algorithm 2's unit noise)")
    if v['s_tmin'] < 0:
        raise ConfigError('sampling.edm.s_tmin', v['s_tmin'], 'a noise level >= 0')
    if v['s_tmin'] > v['s_tmax']:
        raise ConfigError('sampling.edm.s_tmin', v['s_tmin'],
                          f"at most sampling.edm.s_tmax={v['s_tmax']!r} (churn acts on the "
                          'noise levels s_tmin <= sigma <= s_tmax)')
    return v


@register_solver(SolverSpec(
    name='edm_stochastic', kind='SDE', preconditioner='corrector',
    preconditioner_reason="PDS may not colour EDM's churn noise nor enter its ODE steps (it "
    'changes the distribution the sampler produces); M may go to a Langevin corrector after '
    'each step (sampling.ode_corrector)',
    noise='slot 0: the churn noise', moments='stepwise', grid='karras', nfe=_heun_nfe,
    nfe_text='2N - 1', where_text='an `ode_corrector` only (the churn noise stays white)',
    reference=f'{EDM_PAPER}, Algorithm 2',
    config_fields=CONFIG_FIELDS))
def from_config_stochastic(config, sde: SDE) -> EDMStochastic:
    fields = edm_fields(config)
    return EDMStochastic(num_iterations(config)[0], **fields)
