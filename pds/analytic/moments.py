"""Exact population moments of the predictor-corrector sampler on a stationary Gaussian field.

With the exact score of a Gaussian field (:mod:`pds.analytic.gaussian_field`) and a
preconditioner that is diagonal in the 2-D DFT basis (:class:`~pds.method.precondition.Identity`
or the PDS frequency gain alone), every corrector and predictor step is affine in x, circulant
per channel, with fresh noise:

    x' = A x + b + sum_j C_j z_j,   per Fourier mode:   X' = A(k) X + B(k) + sum_j C_j(k) Z_j.

So each mode's mean m(k) and variance V(k) = E|X(k) - m(k)|^2 (orthonormal DFT, where white
noise has E|Z(k)|^2 = 1) propagate exactly:

    m' = A m + B,     V' = |A|^2 V + sum_j |C_j|^2.

The coefficients are read off THE PROJECT'S OWN STEP FUNCTIONS (``pds.sampling.predictors``,
``pds.sampling.correctors``, the SDE's ``prior_sampling``), never from a second copy of their
formulas: each sub-step runs once on a probe batch of 2 + J rows, x = 0 with zero noise (its
output is b), x = a unit impulse at pixel (0, 0) of every channel (output minus b: the impulse
response of A, whose unnormalised rfft2 is A(k)) and, per noise slot j, x = 0 with that slot's
draw an impulse (C_j(k)). The step maps must not mix channels (no step of the project does).
The whole grid runs in one jitted ``lax.scan``, one batched call per sub-step. Two layouts:

- 'image': the probe on the real (H, W, C) image, with the field's exact score
  (:func:`~pds.analytic.gaussian_field.exact_score_fn`) and the preconditioner as given; every
  sub-step costs several FFTs of the image (~45-90 ms per iteration at 256 x 256 on 2 cores).
- 'modes' (default): the same step functions on a (1, 1, K) "image" with one channel per
  half-spectrum mode (the 1 x 1 DFT is the identity), with the score and the gain in their
  per-mode forms (:func:`mode_score_fn`, :class:`ModeGain`: the only formulas written here,
  checked against the 'image' layout in tests). Modes with equal eigenvalue, gain and mean
  share one recursion and run once (:func:`merge_modes`), which shrinks the baseline sampler's
  problem to its distinct radii. It costs ~1.5 ms per iteration at 256 x 256 x 3 and 20-40 ms
  at 1024 x 1024 x 3 (2 shared cores), and is free of the image layout's float32 cancellation
  in the DC mean.

The Langevin corrector's step size is the only non-affine piece: eps = 2 a_t (snr
mean_b ||M z_b|| / mean_b ||M M^T s(x_b)||)^2 with means over the sampling batch. Norms of
high-dimensional Gaussian vectors concentrate (||v|| / sqrt(E ||v||^2) -> 1 as the effective
dimension grows), so the infinite-batch value replaces mean_b ||v_b|| by sqrt(E ||v||^2):

    E ||M z||^2 = sum_k |N(k)|^2,   E ||M M^T s||^2 = sum_k |G(k) m(k) + g_0(k)|^2 + |G(k)|^2 V(k),

where N, G and g_0 are read off the same probe batch inside the step (through the step-size
hook of :func:`pds.sampling.correctors.langevin_loop`). For a real field's propagated moments
these are sum_k R^2 and sum_k R^4 (|m - a mu|^2 + V) / (a^2 lambda + s^2)^2. The corrector step
then runs with that fixed step size. ALD's step size is deterministic already.

Sums over k run over the full spectrum; on the half spectrum of rfft2 every mode except the
columns k_x = 0 and k_x = W / 2 stands for itself and its conjugate, and is counted twice. The
population Frechet distance to the field

    FD = sum_k |m(k) - mu(k)|^2 + (sqrt(V(k)) - sqrt(lambda(k)))^2

is then the large-sample limit of :meth:`pds.analytic.fd.FourierMoments.frechet_distance`.

Covered: predictors reverse_diffusion, euler_maruyama (both ``predictor_form``\\ s),
ancestral_sampling and none; correctors langevin, ald and none; any ``n_steps_each``; VE, VP
and subVP SDEs; ``noise_removal`` (the output is then the last step's x_mean). The ODE
solvers (:func:`deterministic_moments`) and EDM's stochastic sampler (:func:`stepwise_moments`)
run in the per-mode layout without a preconditioner.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from pds.analytic import fd
from pds.analytic.gaussian_field import GaussianField, exact_score_fn
from pds.analytic.targets import TARGETS, quoted, target_names
from pds.method.pds_preconditioner import PDSPreconditioner
from pds.method.precondition import Identity, Preconditioner
from pds.method.sde import SDE
from pds.runtime.errors import ConfigError
from pds.sampling.context import Context
from pds.sampling.correctors import get_corrector, langevin_loop
from pds.sampling.grid import TimeGrid
from pds.sampling.pc import PredictorCorrector
from pds.sampling.predictors import get_predictor
from pds.sampling.solver import solver_from_config, solver_spec, solver_specs

# the exact score of a target whose Fourier modes are independent Gaussians: affine in x
EXACT_SCORE_NEEDED = (f'{quoted(target_names(gaussian_modes=True))} (population moments need '
                      'the exact score of a target whose Fourier modes are independent '
                      'Gaussians)')

Array = jnp.ndarray

PREDICTORS = ('reverse_diffusion', 'euler_maruyama', 'ancestral_sampling', 'none')
CORRECTORS = ('langevin', 'ald', 'none')


@dataclasses.dataclass(frozen=True)
class PopulationMoments:
    """Per-mode moments of the sampler's output, on the rfft2 half spectrum (H, W // 2 + 1, C)
    in the orthonormal convention (``norm='ortho'``), and what they imply."""

    mean: np.ndarray  # complex128: m(k), the DFT of E[x_0] (the field's own: mu sqrt(HW) at DC)
    var: np.ndarray  # float64: V(k) = E|X(k) - m(k)|^2
    spectrum: np.ndarray  # float64: the field's lambda(k)
    field_mean: np.ndarray  # (C,) mu
    frechet_distance: float  # population FD to the field (module docstring)
    mean_error_sq: float  # sum_k |m(k) - mu(k)|^2, the FD's mean part
    band_ratios: dict[str, float]  # geometric mean of V / lambda per band (pds.analytic.fd)
    nfe: int  # score evaluations per sample
    iterations: int
    width: int  # W (the half spectrum alone does not tell W = 2 n - 1 from 2 n - 2)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        h, _, c = self.var.shape
        return (h, self.width, c)

    def full_mean(self) -> np.ndarray:
        """m(k) on the full spectrum (H, W, C), native FFT layout."""
        return full_spectrum(self.mean, self.width, conjugate=True)

    def full_var(self) -> np.ndarray:
        """V(k) on the full spectrum (H, W, C)."""
        return full_spectrum(self.var, self.width)

    def expected_plugin_fd(self, n: int) -> float:
        """The expected plug-in FD (``FourierMoments.frechet_distance``) of n samples with
        these per-mode moments, Gaussian per mode:

            sum_k |m(k) - mu(k)|^2 + V(k) / n + V(k) - 2 c_d(k) sqrt(V(k) lambda(k)) + lambda(k)

        over the full spectrum, c_d = E sqrt(chi2_d / d), d = 2 (n - 1) (n - 1 on
        self-conjugate modes). At n = 50,000 exact moments give ``fd.expected_floor``."""
        h, w, _ = self.image_shape
        v, lam = self.full_var(), full_spectrum(self.spectrum, w)
        d = np.where(fd.self_conjugate(h, w), n - 1, 2 * (n - 1))[:, :, None]
        return self.mean_error_sq + float(np.sum(
            v / n + v - 2.0 * fd.sqrt_chi2_mean(d) * np.sqrt(v * lam) + lam))

    def ring_pooled_fd(self) -> float:
        """What ``FourierMoments.unbiased_frechet_distance`` estimates without bias: the mean
        part plus sum_r Lambda_r (sqrt(sum_{k in r} V(k) / Lambda_r) - 1)^2 over the integer
        radius rings r (Lambda_r = sum_{k in r} lambda(k)). It is at most the population FD;
        the gap is the spread of V / lambda within rings (for instance a data-estimated PDS
        mask's mode-to-mode noise)."""
        h, w, c = self.image_shape
        order, starts, _ = fd.ring_layout(h, w)
        ring_sum = lambda a: np.add.reduceat(a.reshape(h * w, c)[order], starts, axis=0)
        lam = ring_sum(full_spectrum(self.spectrum, w))
        rho = ring_sum(self.full_var()) / lam
        return self.mean_error_sq + float(np.sum(lam * (np.sqrt(rho) - 1.0) ** 2))

    def summary(self) -> dict[str, Any]:
        return {'frechet_distance': self.frechet_distance, 'mean_error_sq': self.mean_error_sq,
                'band_variance_ratio': dict(self.band_ratios), 'nfe': self.nfe,
                'iterations': self.iterations}


# --- half-spectrum bookkeeping ----------------------------------------------------------------

def half_weights(h: int, w: int) -> np.ndarray:
    """(H, W // 2 + 1): how many full-spectrum modes each half-spectrum mode stands for (1 on
    the columns k_x = 0 and, for even W, k_x = W / 2; 2 elsewhere)."""
    wts = np.full((h, w // 2 + 1), 2.0)
    wts[:, 0] = 1.0
    if w % 2 == 0:
        wts[:, w // 2] = 1.0
    return wts


def full_spectrum(half: np.ndarray, w: int, conjugate: bool = False) -> np.ndarray:
    """(H, W, ...) from the half spectrum (H, W // 2 + 1, ...) of a real signal's statistic:
    X(-k) = conj X(k) (``conjugate``), or V(-k) = V(k)."""
    h = half.shape[0]
    kx = np.arange(w)
    mirrored = kx > w // 2
    col = np.where(mirrored, (w - kx) % w, kx)
    row = np.arange(h)
    direct = half[:, col]
    flipped = half[(-row) % h][:, col]
    if conjugate:
        flipped = np.conj(flipped)
    mask = mirrored.reshape((1, w) + (1,) * (half.ndim - 2))
    return np.where(mask, flipped, direct)


def field_half_moments(field: GaussianField, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The field's own (mean, var) on the orthonormal half spectrum: mu sqrt(HW) at DC, lambda."""
    mean = np.zeros((h, w // 2 + 1, field.num_channels), np.complex128)
    mean[0, 0] = np.asarray(field.mean) * np.sqrt(h * w)
    return mean, field.half_spectrum(h, w)


def _field_modes(field: GaussianField, image_shape: tuple[int, int, int]
                 ) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(H, W, mean, var) of :func:`field_half_moments` for an image shape; ConfigError unless
    the field has one mean per channel."""
    h, w, c = (int(v) for v in image_shape)
    if field.num_channels != c:
        raise ConfigError('model.field_mean', field.mean,
                          f'one mean per channel (data.num_channels={c})')
    return (h, w, *field_half_moments(field, h, w))


def frechet_distance(mean: np.ndarray, var: np.ndarray, field: GaussianField,
                     w: int) -> tuple[float, float]:
    """(FD, mean part) between the Gaussian with half-spectrum moments (mean, var), (H, W // 2 +
    1, C), and the field: sum over the full spectrum of |m - mu|^2 + (sqrt V - sqrt lambda)^2."""
    h = var.shape[0]
    mu, lam = field_half_moments(field, h, w)
    wts = half_weights(h, w)[:, :, None]
    mean_part = float(np.sum(wts * np.abs(np.asarray(mean) - mu) ** 2))
    var_part = float(np.sum(wts * (np.sqrt(np.maximum(var, 0.0)) - np.sqrt(lam)) ** 2))
    return mean_part + var_part, mean_part


def band_ratios(var: np.ndarray, spectrum: np.ndarray) -> dict[str, float]:
    """Geometric mean of V / lambda over the low, mid and high thirds of the frequency radius
    (DC excluded; :func:`pds.analytic.fd.band_variance_ratios`), from the half-spectrum V and
    the full spectrum lambda (H, W, C); NaN for a band without modes."""
    h, w = spectrum.shape[:2]
    if h * w == 1:
        return {name: float('nan') for name in fd.BANDS}
    with warnings.catch_warnings(), np.errstate(invalid='ignore'):
        warnings.simplefilter('ignore', RuntimeWarning)  # an empty band's mean
        return fd.band_variance_ratios(full_spectrum(var, w), spectrum)


# --- validation -------------------------------------------------------------------------------

def check_config(config) -> None:
    """ConfigError (naming the field) unless the config is one this method covers."""
    kind = TARGETS.get(config.model.name)
    if kind is None or not kind.target_type.gaussian_modes:
        raise ConfigError('model.name', config.model.name, EXACT_SCORE_NEEDED)
    if config.model.get('score_norm_cap', 0.0):
        raise ConfigError('model.score_norm_cap', config.model.score_norm_cap,
                          '0 for population moments (a capped score is not affine in x)')
    s = config.sampling
    if s.get('ode_corrector', 'none') != 'none':
        raise ConfigError('sampling.ode_corrector', s.ode_corrector,
                          "'none' for population moments (a corrector after an ODE step is "
                          'not propagated: sample it)')
    engine = solver_spec(s.method).moments
    if engine in ('affine', 'stepwise'):
        return
    if engine != 'propagated':
        covered = [spec.name for spec in solver_specs() if spec.moments != 'none']
        raise ConfigError('sampling.method', s.method, 'one of ' + ', '.join(covered)
                          + ' (population moments cover these samplers)')
    _check_steps(s.predictor, s.corrector)
    if s.precondition == 'pds' and s.pds.space_mask != '':
        raise ConfigError('sampling.pds.space_mask', s.pds.space_mask,
                          "'' (a pixel-space gain is not diagonal in the Fourier basis)")


def _check_steps(predictor: str, corrector: str) -> None:
    if predictor not in PREDICTORS:
        raise ConfigError('sampling.predictor', predictor,
                          'for population moments one of ' + ', '.join(PREDICTORS))
    if corrector not in CORRECTORS:
        raise ConfigError('sampling.corrector', corrector,
                          'for population moments one of ' + ', '.join(CORRECTORS))


def _check_parts(field, precond, solver) -> None:
    if not isinstance(field, GaussianField):
        raise ConfigError('model.name', type(field).__name__, EXACT_SCORE_NEEDED)
    if not isinstance(solver, PredictorCorrector):
        raise ConfigError('sampling.method', type(solver).__name__,
                          "'pc' (population moments cover the predictor-corrector sampler)")
    _check_steps(solver.predictor, solver.corrector)
    if isinstance(precond, PDSPreconditioner):
        if precond.space is not None:
            raise ConfigError('sampling.pds.space_mask', 'a pixel-space gain',
                              "'' (a pixel-space gain is not diagonal in the Fourier basis)")
    elif not isinstance(precond, Identity):
        raise ConfigError('sampling.precondition', type(precond).__name__,
                          "'none' or 'pds' (a Fourier-diagonal preconditioner)")


# --- entry points -----------------------------------------------------------------------------

def population_moments(config, exp) -> PopulationMoments:
    """The moments of the sampler ``config`` describes (an exact-score field config) for its
    experiment ``exp`` = ``pds.experiment.assemble.experiment_from_config(config)`` (built by
    the caller: ``pds.analytic`` may not import ``pds.experiment``; a bench passes each rung's
    experiment with its sde and grid replaced). ConfigError names the field the method does
    not cover."""
    check_config(config)
    return experiment_moments(exp, solver_from_config(config, exp.sde),
                              engine=solver_spec(config.sampling.method).moments)


def experiment_moments(exp, solver, layout: str = 'modes',
                       engine: str = 'propagated') -> PopulationMoments:
    """The moments for an :class:`pds.experiment.assemble.Experiment` (its sde, grid, field,
    preconditioner and image shape) and a solver, by the solver's declared moments ``engine``
    (:data:`pds.sampling.declaration.MOMENTS_ENGINES`; 'propagated': the predictor-corrector
    recursion); the experiment's score must be the field's exact score."""
    if exp.field is None or exp.score_builder is not exact_score_fn:
        raise ConfigError('model.name', 'a network score', EXACT_SCORE_NEEDED)
    mean_prior = getattr(exp, 'prior_mean', None) is not None
    gaussian_prior = getattr(exp, 'prior_spectrum', None) is not None
    if engine not in ('affine', 'stepwise', 'propagated'):
        raise ValueError(f'no population moments for the engine {engine!r}')
    if engine != 'propagated':
        moments = deterministic_moments if engine == 'affine' else stepwise_moments
        return moments(exp.sde, exp.grid, exp.field, solver, exp.image_shape,
                       mean_prior and not gaussian_prior, gaussian_prior)
    if gaussian_prior:
        raise ConfigError('sampling.prior', 'gaussian', "'score_sde' or 'mean' for the "
                          'population moments of a stochastic sampler (the Gaussian prior is '
                          'propagated for ODE solvers)')
    return propagate(exp.sde, exp.grid, exp.field, exp.precond, solver, exp.image_shape, layout,
                     mean_prior)


def prior_scales(sde: SDE) -> tuple[Array, Array]:
    """(alpha(T), std(T)) of the marginal x_T = alpha(T) x_0 + std(T) z at the prior's time
    (scalar arrays: usable inside a traced function)."""
    return sde.marginal_prob(jnp.ones(()), jnp.float32(sde.T))


@dataclasses.dataclass(frozen=True)
class _ModeRuns:
    """A field in the per-mode layout for the solver-run probes (:func:`deterministic_moments`,
    :func:`stepwise_moments`): one channel per distinct (lambda, mu) mode (:func:`merge_modes`),
    the exact score (:func:`mode_score_fn`), no preconditioner, and the prior's per-mode
    moments."""

    sde: SDE
    field: GaussianField
    w: int
    lam: np.ndarray  # (H, W // 2 + 1, C) the field's half spectrum
    inverse: np.ndarray  # (modes,) index of each mode's distinct row
    variables: dict[str, Array]  # mode_score_fn's, K distinct modes
    mean_t: np.ndarray  # (K,) the prior's mean per distinct mode
    var_t: np.ndarray  # (K,) the prior's variance per distinct mode

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1, 1, int(self.mean_t.shape[0]))

    @property
    def dtype(self):
        return self.variables['spectrum'].dtype

    def context(self, rows: int, noise_fn=None) -> Context:
        """A Context for a probe batch of ``rows`` (``noise_fn``: the draws' replacement)."""
        return Context(self.sde, mode_score_fn(self.sde, self.variables), Identity(),
                       jnp.zeros((rows,), jnp.uint32), self.shape, _no_batch_statistic,
                       _no_batch_statistic, noise_fn)

    def result(self, mean: np.ndarray, var: np.ndarray, nfe: int,
               iterations: int) -> PopulationMoments:
        """The PopulationMoments of the output's per-distinct-mode (mean, var), each (K,)."""
        as_half = lambda v: np.asarray(v, np.float64).reshape(-1)[self.inverse].reshape(
            self.lam.shape)
        mean, var = as_half(mean).astype(np.complex128), as_half(var)
        dist, mean_part = frechet_distance(mean, var, self.field, self.w)
        h = self.lam.shape[0]
        return PopulationMoments(mean, var, self.lam, np.asarray(self.field.mean), dist,
                                 mean_part, band_ratios(var, self.field.spectrum(h, self.w)),
                                 int(nfe), iterations, self.w)


def _mode_runs(sde: SDE, field: GaussianField, image_shape: tuple[int, int, int],
               mean_prior: bool, gaussian_prior: bool) -> _ModeRuns:
    """The per-mode layout and the prior x_T's moments: mean alpha(T) mu with the mean or
    Gaussian prior (else 0), variance the prior's sigma_T^2 (with the Gaussian prior the
    marginal's alpha(T)^2 lambda + std(T)^2)."""
    _, w, mu, lam = _field_modes(field, image_shape)
    unique, inverse = merge_modes(lam.ravel(), mu.real.ravel())
    real = jax.dtypes.canonicalize_dtype(jnp.float64)
    variables = {'mean': jnp.asarray(unique[:, 1], real),
                 'spectrum': jnp.asarray(unique[:, 0].reshape(1, 1, -1), real)}
    alpha_t, std_t = (float(v) for v in prior_scales(sde))
    if gaussian_prior:
        var_t = alpha_t**2 * unique[:, 0] + std_t**2
    else:
        var_t = np.full(len(unique), float(np.asarray(
            sde.prior_sampling(jnp.ones((1,), real)))[0]) ** 2)
    m_t = alpha_t * unique[:, 1] if (mean_prior or gaussian_prior) else np.zeros(len(unique))
    return _ModeRuns(sde, field, w, lam, inverse, variables, m_t, var_t)


def deterministic_moments(sde: SDE, grid: TimeGrid, field: GaussianField, solver,
                          image_shape: tuple[int, int, int], mean_prior: bool = False,
                          gaussian_prior: bool = False) -> PopulationMoments:
    """The moments of a solver that is deterministic after the prior draw (moments engine
    'affine': an ODE solver) with the field's exact score and no preconditioner.

    Every step is then affine per mode and draws no noise, so the whole run is
    x_0(k) = A(k) x_T(k) + B(k): one run of THE SOLVER ITSELF (its ``scan_loop``, in the
    per-mode layout) on two probe rows, x_T = 0 (giving B) and x_T = 1 in every mode
    (giving A + B), yields A and B; then m_0 = A m_T + B and V_0 = |A|^2 V_T with the
    prior's mean m_T (alpha(T) mu with the mean or Gaussian prior, else 0) and variance V_T
    (the prior's sigma_T^2; with the Gaussian prior the marginal's alpha(T)^2 lambda + std(T)^2).
    """
    from pds.sampling.loops import scan_loop

    runs = _mode_runs(sde, field, image_shape, mean_prior, gaussian_prior)
    probe = jnp.stack([jnp.zeros(runs.shape, runs.dtype), jnp.ones(runs.shape, runs.dtype)])
    out = jax.jit(lambda x: scan_loop(solver, runs.context(2), grid, x))(probe)
    y, nfe = out.x, out.nfe
    y = np.asarray(y, np.float64).reshape(2, -1)
    b, a = y[0], y[1] - y[0]
    return runs.result(a * runs.mean_t + b, a**2 * runs.var_t, np.asarray(nfe)[0],
                       grid.num_steps)


def stepwise_moments(sde: SDE, grid: TimeGrid, field: GaussianField, solver,
                     image_shape: tuple[int, int, int], mean_prior: bool = False,
                     gaussian_prior: bool = False) -> PopulationMoments:
    """The moments of a solver whose state is x and whose every step, with the field's exact
    score and no preconditioner, is affine per mode in x and the step's fresh draws
    (moments engine 'stepwise': EDM's stochastic sampler):

        X' = a(k) X + b(k) + sum_j c_j(k) Z_j,   m' = a m + b,   V' = a^2 V + sum_j c_j^2,

    starting from the prior's moments (as :func:`deterministic_moments`). Each step of THE
    SOLVER ITSELF runs once on the probe rows of :func:`propagate` in the per-mode layout:
    x = 0 with zero draws (b), x = 1 in every mode (a + b) and, per noise slot j, x = 0 with
    that draw 1 in every mode (c_j + b), the draws replaced through ``Context.noise_fn``. A
    standard normal per channel of the (1, 1, K) layout is what white noise is per orthonormal
    DFT mode, E|Z(k)|^2 = 1 (a complex mode's real and imaginary parts 1/2 each), so c^2 adds
    to V = E|X - m|^2 as the noise power of :func:`propagate` does. The grid's steps run in
    one jitted ``lax.scan``."""
    runs = _mode_runs(sde, field, image_shape, mean_prior, gaussian_prior)
    mean, var, nfe = _stepwise(solver, runs, grid.intervals())
    return runs.result(mean, var, nfe, grid.num_steps)


def _stepwise(solver, runs: _ModeRuns, intervals) -> tuple[Array, Array, int]:
    """(mean, var) (1, 1, K) after every interval of ``intervals``, and the NFE."""
    from pds.sampling.loops import counted_step  # the loops' NFE count of one step

    shape, dtype = runs.shape, runs.dtype
    first = jax.tree_util.tree_map(lambda v: v[0], intervals)

    def step(x, noise):
        ctx = runs.context(x.shape[0], lambda interval, slot: noise(slot))
        state = solver.init(ctx, x)
        if state is not x:
            raise ValueError(f'stepwise moments need a solver whose state is x, not '
                             f'{type(solver).__name__}')
        return solver.output(ctx, solver.step(ctx, state, first))

    x, noise = _probe_batch(shape, _slots_used(step, shape, dtype), dtype)
    ctx = runs.context(x.shape[0], lambda interval, slot: noise(slot))

    def body(carry, interval):
        m, v, nfe = carry
        y, calls = counted_step(solver, ctx, x, interval)
        m, v = _apply(_coefficients(solver.output(ctx, y), 1), m, v)
        return (m, v, nfe + calls), None

    init = (jnp.asarray(runs.mean_t.reshape(shape), dtype),
            jnp.asarray(runs.var_t.reshape(shape), dtype), jnp.zeros((), jnp.int32))
    (mean, var, nfe), _ = jax.jit(lambda c: jax.lax.scan(body, c, intervals))(init)
    return mean, var, int(nfe)


def propagate(sde: SDE, grid: TimeGrid, field: GaussianField, precond: Preconditioner,
              solver: PredictorCorrector, image_shape: tuple[int, int, int],
              layout: str = 'modes', mean_prior: bool = False) -> PopulationMoments:
    """Propagate every mode's mean and variance from the prior through ``solver`` on ``grid``
    (module docstring), in the ``layout`` 'modes' (default) or 'image'. ``mean_prior``:
    x_T is shifted by alpha(T) mu (``sampling.prior='mean'``; modes layout)."""
    _check_parts(field, precond, solver)
    if layout not in LAYOUTS:
        raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
    if mean_prior and layout != 'modes':
        raise ValueError("the mean prior is propagated in the 'modes' layout only")
    h, w, mu, lam = _field_modes(field, image_shape)
    weights = np.broadcast_to(half_weights(h, w)[:, :, None], lam.shape)
    if layout == 'image':
        mean, var, nfe = _propagate(sde, solver, layout, (h, w, lam.shape[2]),
                                    field.variables(h, w), precond, grid.intervals(),
                                    jnp.asarray(weights, jnp.float32))
        mean, var = np.asarray(mean, np.complex128), np.asarray(var, np.float64)
    else:
        gain = getattr(precond, 'freq', None)
        gain = np.ones(lam.shape) if gain is None else np.asarray(gain, np.float64)
        if gain.shape != lam.shape:
            raise ConfigError('sampling.pds.freq_mask', gain.shape,
                              f'a gain of the image shape (half spectrum {lam.shape})')
        unique, inverse = merge_modes(gain.ravel(), lam.ravel(), mu.real.ravel())
        wts = np.bincount(inverse, weights=weights.ravel(), minlength=len(unique))
        real = jax.dtypes.canonicalize_dtype(jnp.float64)  # float32 unless x64 is enabled
        per_mode = lambda v: jnp.asarray(v.reshape(1, 1, -1), real)
        variables = {'mean': jnp.asarray(unique[:, 2], real),
                     'spectrum': per_mode(unique[:, 1])}
        mean, var, nfe = _propagate(sde, solver, layout, (1, 1, len(unique)), variables,
                                    ModeGain(per_mode(unique[:, 0])), grid.intervals(),
                                    per_mode(wts), mean_prior)
        mean = np.asarray(mean, np.float64).reshape(-1)[inverse].reshape(lam.shape)
        var = np.asarray(var, np.float64).reshape(-1)[inverse].reshape(lam.shape)
        mean = mean.astype(np.complex128)
    dist, mean_part = frechet_distance(mean, var, field, w)
    spectrum = field.spectrum(h, w)
    return PopulationMoments(mean, var, lam, np.asarray(field.mean), dist, mean_part,
                             band_ratios(var, spectrum), int(nfe), grid.num_steps, w)


def merge_modes(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Modes with equal eigenvalue, gain and mean follow one recursion: (unique rows (U,
    len(keys)), inverse (K,)) of the per-mode keys, so that each recursion runs once. Keys
    with mostly distinct values (a gain estimated from data) are not worth the sorts."""
    if any(2 * np.unique(k).size > k.size for k in keys):
        return np.stack(keys, axis=1), np.arange(len(keys[0]))
    code = np.zeros(len(keys[0]), np.int64)
    for k in keys:  # one integer code per distinct tuple (1-D sorts only)
        values, rank = np.unique(k, return_inverse=True)
        code = code * len(values) + rank.reshape(-1)
        code = np.unique(code, return_inverse=True)[1].reshape(-1)  # keep codes < K
    first = np.unique(code, return_index=True)[1]
    return np.stack([k[first] for k in keys], axis=1), code


# --- the propagation ------------------------------------------------------------------------

LAYOUTS = ('modes', 'image')


@struct.dataclass
class ModeGain:
    """The Fourier-diagonal preconditioner in the per-mode layout: M = diag(gain), one
    channel per mode, as :class:`~pds.method.pds_preconditioner.PDSPreconditioner`'s
    frequency gain R acts on each mode (M z -> R Z, M M^T g -> R^2 G)."""

    gain: Array  # (1, 1, K)

    def noise(self, z: Array) -> Array:
        return z * self.gain

    def drift(self, g: Array) -> Array:
        return g * self.gain**2


def mode_score_fn(sde: SDE, variables: dict[str, Array]):
    """:func:`pds.analytic.gaussian_field.exact_score_fn` in the per-mode layout, where the
    orthonormal DFT is the identity: s = -(X - a mu) / (a^2 lambda + s^2) per channel (mode)."""

    def score(x: Array, t: Array) -> Array:
        a, s = sde.marginal_prob(jnp.ones((x.shape[0], 1, 1, 1), x.dtype), t)
        s2 = (s**2).reshape(-1, 1, 1, 1)
        return -(x - a * variables['mean']) / (a**2 * variables['spectrum'] + s2)

    return score


def _no_batch_statistic(v):
    raise RuntimeError('population moments replace batch statistics by their infinite-batch '
                       'values; a step asked for a batch mean')


def _impulse(shape: tuple[int, int, int], dtype) -> Array:
    return jnp.zeros(shape, dtype).at[0, 0, :].set(1.0)


def _slots_used(step, shape: tuple[int, int, int], dtype) -> list[int]:
    """The noise slots a step draws (traced abstractly once)."""
    used: list[int] = []

    def noise(slot):
        used.append(int(slot))
        return jnp.zeros((1, *shape), dtype)

    jax.eval_shape(lambda x: step(x, noise), jax.ShapeDtypeStruct((1, *shape), dtype))
    return sorted(set(used))


def _probe_batch(shape, slots, dtype):
    """x rows (0, impulse, 0 ...) and noise(slot): the impulse in row 2 + j for slot j."""
    delta = _impulse(shape, dtype)
    zero = jnp.zeros(shape, dtype)
    rows = 2 + len(slots)
    x = jnp.stack([zero, delta] + [zero] * len(slots))

    def noise(slot):
        j = slots.index(int(slot))
        return jnp.zeros((rows, *shape), dtype).at[2 + j].set(delta)

    return x, noise


def _coefficients(spec: Array, n: int) -> tuple[Array, Array, Array]:
    """(A, B, sum_j |C_j|^2) from the (unnormalised) spectra of a probe batch's outputs (rows,
    ...): row 0 is B, row 1 A + B, rows 2 + j C_j + B; B in the orthonormal convention (n
    pixels per channel)."""
    b = spec[0]
    noise_power = jnp.sum(jnp.abs(spec[2:] - b) ** 2, axis=0)
    return spec[1] - b, b / np.sqrt(n), noise_power


def _apply(coef, mean, var):
    a, b, noise_power = coef
    return a * mean + b, jnp.abs(a) ** 2 * var + noise_power


@functools.partial(jax.jit, static_argnames=('sde', 'solver', 'layout', 'shape', 'mean_prior'))
def _propagate(sde, solver, layout, shape, variables, precond, intervals, weights,
               mean_prior=False):
    n = shape[0] * shape[1]
    dtype = variables['spectrum'].dtype
    if layout == 'image':
        score_fn = exact_score_fn(sde, variables)
        spectrum = lambda y: jnp.fft.rfft2(y, axes=(1, 2))  # unnormalised: transfer functions
    else:
        score_fn = mode_score_fn(sde, variables)
        spectrum = lambda y: y  # one mode per channel: the DFT is the identity

    def coefficients(y):
        """(A, B, sum_j |C_j|^2) from a probe batch's outputs y (rows, ...), B orthonormal."""
        return _coefficients(spectrum(y), n)

    ctx = Context(sde, score_fn, precond, jnp.zeros((3,), jnp.uint32), shape,
                  _no_batch_statistic, _no_batch_statistic)
    counted, calls = ctx.counting()
    env = solver.env(counted)
    plain_env = solver.env(ctx)

    # The prior x_T = prior_sampling(M z).
    _, noise = _probe_batch(shape, [0], dtype)
    mean, var = _apply(coefficients(sde.prior_sampling(precond.noise(noise(0)))), 0.0, 0.0)
    if mean_prior:  # sampling.prior='mean': x_T += alpha(T) mu (modes layout only)
        mean = mean + prior_scales(sde)[0] * variables['mean'].reshape(mean.shape)

    def corrector_step(e, x, t, index, noise, moments):
        if solver.corrector == 'ald':
            return get_corrector('ald')(e, x, t, index, noise)
        m, v = moments
        alpha = e.langevin_alpha(index)

        def step_size(grad, z):  # the infinite-batch step size (module docstring)
            g = spectrum(jnp.stack([grad[0], grad[1], z[2] - z[0]]))
            gain, offset, noise_tf = g[1] - g[0], g[0] / np.sqrt(n), g[2]
            grad_sq = jnp.sum(weights * (jnp.abs(gain * m + offset) ** 2
                                         + jnp.abs(gain) ** 2 * v))
            noise_sq = jnp.sum(weights * jnp.abs(noise_tf) ** 2)
            eps = 2.0 * alpha * (e.snr * jnp.sqrt(noise_sq / grad_sq)) ** 2
            return jnp.broadcast_to(eps, t.shape)

        return langevin_loop(e, x, t, noise, step_size)

    def probe_slots(fn, plain):
        return _slots_used(lambda x, noise: fn(plain, x, jnp.zeros((x.shape[0],), jnp.float32),
                                                jnp.int32(0), noise), shape, dtype)

    corrector_env = dataclasses.replace(env, n_steps=1)  # one sub-step at a time
    predictor = get_predictor(solver.predictor)
    if solver.corrector != 'none':
        c_slots = probe_slots(lambda e, x, t, i, nz: corrector_step(e, x, t, i, nz, (mean, var)),
                              dataclasses.replace(plain_env, n_steps=1))
    if solver.predictor != 'none':
        p_slots = probe_slots(predictor, plain_env)
    last_iteration = intervals.iteration.shape[0] - 1

    def body(carry, interval):
        m, v, m_out, v_out = carry
        t, index = interval.t, interval.index
        if solver.corrector != 'none':
            x, noise = _probe_batch(shape, c_slots, dtype)
            tb = jnp.full((x.shape[0],), t, jnp.float32)
            for _ in range(solver.n_steps_each):
                y, _ = corrector_step(corrector_env, x, tb, index, noise, (m, v))
                m, v = _apply(coefficients(y), m, v)
        if solver.predictor == 'none':  # the step's output is (x, x)
            return (m, v, m, v), None
        x, noise = _probe_batch(shape, p_slots, dtype)
        y, y_mean = predictor(env, x, jnp.full((x.shape[0],), t, jnp.float32), index, noise)
        m_out, v_out = jax.lax.cond(interval.iteration == last_iteration,
                                    lambda: _apply(coefficients(y_mean), m, v),
                                    lambda: (m_out, v_out))
        m, v = _apply(coefficients(y), m, v)
        return (m, v, m_out, v_out), None

    (mean, var, mean_out, var_out), _ = jax.lax.scan(body, (mean, var, mean, var), intervals)
    nfe = len(calls) * intervals.t.shape[0]
    if solver.noise_removal:
        return mean_out, var_out, nfe
    return mean, var, nfe
