"""Mixtures of stationary Gaussian fields: a non-Gaussian target whose perturbed score is exact.

The data distribution is p_0 = sum_k pi_k N(mu_k, Sigma_k) with 2 to 4 components, each a
:class:`~pds.analytic.gaussian_field.GaussianField` (per-channel means mu_k, covariance Sigma_k
diagonal in the orthonormal 2-D DFT basis U with eigenvalues lambda_k). A linear SDE with
marginal x_t = a x_0 + s z maps it to

    p_t(x) = sum_k pi_k N_k(x),   N_k = N(a mu_k, a^2 Sigma_k + s^2 I),

and each component's density is diagonal in U: with R_k = U(x - a mu_k), v_k = a^2 lambda_k + s^2,

    log N_k(x) = -1/2 sum_modes [ |R_k|^2 / v_k + log(2 pi v_k) ]

(a sum over every mode of the full spectrum and every channel; it is evaluated on the half
spectrum of ``rfft2`` with each column counted as often as it appears in the full spectrum:
once for column 0 and, W even, column W/2, twice for the others, whose Hermitian partner
has the same |R|^2 and v). The exact score is the posterior-weighted sum of the components'
scores,

    grad log p_t(x) = sum_k w_k(x) (-U^H[R_k / v_k]),   w_k = softmax_k(log pi_k + log N_k(x)),

with the softmax taken after subtracting the largest logit (log-sum-exp), so it is stable
from sigma_min = 0.01, where one component's logit exceeds the others' by thousands, to
sigma ~ 350, where all are nearly equal. One rfft2 / irfft2 pair per evaluation.

Metrics (host, float64): :meth:`GaussianMixtureField.posterior` (component probabilities
under the data distribution), :meth:`GaussianMixtureField.frechet_distance` (the plug-in
Frechet distance to the mixture's exact first two moments) and :func:`mixture_report`
(recovered weights, per-component band variance ratios, Frechet distance).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from pds.analytic import fd
from pds.analytic.gaussian_field import GaussianField
from pds.method.sde import SDE
from pds.runtime.errors import ConfigError

Array = jnp.ndarray
MIN_COMPONENTS, MAX_COMPONENTS = 2, 4
WEIGHT_TOL = 1e-6


def half_multiplicity(w: int) -> np.ndarray:
    """How often each rfft2 column (W // 2 + 1,) appears in the full spectrum of width W."""
    mult = np.full(w // 2 + 1, 2.0)
    mult[0] = 1.0
    if w % 2 == 0:
        mult[-1] = 1.0
    return mult


# ------------------------------------------------------------------------------------------
# The mixture


@dataclasses.dataclass(frozen=True)
class GaussianMixtureField:
    """sum_k weights[k] * components[k]; validated on construction (ConfigError naming the
    ``model.mixture_*`` config field)."""

    components: tuple[GaussianField, ...]
    weights: tuple[float, ...]
    # the DC modes' channels are correlated and no mode is Gaussian
    # (pds.analytic.targets.ExactTarget)
    gaussian_modes: ClassVar[bool] = False

    def __post_init__(self):
        comps, weights = tuple(self.components), tuple(float(p) for p in self.weights)
        object.__setattr__(self, 'components', comps)
        object.__setattr__(self, 'weights', weights)
        k = len(weights)
        if not MIN_COMPONENTS <= k <= MAX_COMPONENTS:
            raise ConfigError('model.mixture_weights', weights,
                              f'{MIN_COMPONENTS} to {MAX_COMPONENTS} component weights')
        if len(comps) != k:
            raise ConfigError('model.mixture_means', len(comps),
                              f'one component per weight ({k} in model.mixture_weights)')
        if not all(np.isfinite(p) and p > 0 for p in weights) or \
                abs(sum(weights) - 1.0) > WEIGHT_TOL:
            raise ConfigError('model.mixture_weights', weights,
                              f'weights > 0 summing to 1 (within {WEIGHT_TOL:g})')
        channels = {c.num_channels for c in comps}
        if len(channels) != 1:
            raise ConfigError('model.mixture_means', tuple(c.mean for c in comps),
                              'the same number of channel means for every component')
        for c in comps:
            if len(c.variance) != c.num_channels or not all(
                    np.isfinite(v) and v > 0 for v in c.variance):
                raise ConfigError('model.mixture_variances', tuple(c.variance for c in comps),
                                  'positive variances, one (or one per channel) per component')
            if not (np.isfinite(c.k0) and c.k0 > 0):
                raise ConfigError('model.mixture_k0', tuple(c.k0 for c in comps),
                                  'positive corner frequencies, one per component')
            if not np.isfinite(c.beta):
                raise ConfigError('model.mixture_betas', tuple(c.beta for c in comps),
                                  'finite spectral slopes, one per component')

    @property
    def num_components(self) -> int:
        return len(self.components)

    @property
    def num_channels(self) -> int:
        return self.components[0].num_channels

    @property
    def mean(self) -> tuple[float, ...]:
        """The mixture's per-channel mean sum_k pi_k mu_k."""
        return tuple((np.asarray(self.weights) @ self._means()).tolist())

    def _means(self) -> np.ndarray:
        return np.asarray([c.mean for c in self.components], np.float64)  # (K, C)

    def spectra(self, h: int, w: int) -> np.ndarray:
        """Every component's eigenvalues (K, H, W, C), float64, native FFT layout."""
        return np.stack([c.spectrum(h, w) for c in self.components])

    # -- sampling ----------------------------------------------------------------------------

    def sample_with_labels(self, rng: np.random.Generator, n: int, h: int, w: int
                           ) -> tuple[np.ndarray, np.ndarray]:
        """n exact samples (n, H, W, C) float64 and their components (n,) int: labels drawn
        with probabilities pi first, then each component's samples by GaussianField.sample."""
        p = np.asarray(self.weights) / np.sum(self.weights)
        labels = rng.choice(self.num_components, size=n, p=p)
        out = np.empty((n, h, w, self.num_channels))
        for k, comp in enumerate(self.components):
            sel = np.flatnonzero(labels == k)
            if len(sel):
                out[sel] = comp.sample(rng, len(sel), h, w)
        return out, labels

    def sample(self, rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
        """n exact samples (n, H, W, C), float64 (:meth:`sample_with_labels` without labels)."""
        return self.sample_with_labels(rng, n, h, w)[0]

    # -- the score ---------------------------------------------------------------------------

    def variables(self, h: int, w: int, dtype=jnp.float32) -> dict[str, Array]:
        """Arrays the score needs: 'means' (K, C), 'spectra' (the half spectra,
        (K, H, W // 2 + 1, C)) and 'log_weights' (K,), of ``dtype`` (float32 by default)."""
        return {'means': jnp.asarray(self._means(), dtype),
                'spectra': jnp.asarray(self.spectra(h, w)[:, :, : w // 2 + 1], dtype),
                'log_weights': jnp.asarray(np.log(self.weights), dtype)}

    def log_density(self, x: Array, a, s) -> Array:
        """log p_t(x) (B,) for x_t = a x_0 + s z; x (B, H, W, C), a and s scalars or (B,).
        JAX, differentiable; computed in x's dtype."""
        h, w = x.shape[1:3]
        return mixture_log_density(self.variables(h, w, x.dtype), x, a, s)

    # -- host metrics (numpy, float64) -------------------------------------------------------

    def log_density_host(self, x: np.ndarray, a: float, s: float) -> np.ndarray:
        """log p_t(x) (N,) for x_t = a x_0 + s z, float64 on the host (numpy): the
        log-sum-exp of the components' log-densities (module docstring)."""
        from scipy.special import logsumexp

        x = np.asarray(x, np.float64)
        h, w = x.shape[1:3]
        ones = np.ones(len(x))
        _, logits = _component_terms(np, x, a * ones, s * ones, self._means(),
                                     self.spectra(h, w)[:, :, : w // 2 + 1],
                                     np.log(np.asarray(self.weights)))
        return logsumexp(logits, axis=0)


    def posterior(self, x: np.ndarray, chunk: int = 64) -> np.ndarray:
        """Component probabilities (N, K) of samples x (N, H, W, C) under the data
        distribution (t = 0: a = 1, s = 0); float64 on the host."""
        x = np.asarray(x, np.float64)
        h, w = x.shape[1:3]
        means, spectra = self._means(), self.spectra(h, w)[:, :, : w // 2 + 1]
        logw = np.log(np.asarray(self.weights))
        out = np.empty((len(x), self.num_components))
        for lo in range(0, len(x), chunk):
            xb = x[lo: lo + chunk]
            ones = np.ones(len(xb))
            _, logits = _component_terms(np, xb, ones, 0.0 * ones, means, spectra, logw)
            out[lo: lo + len(xb)] = _softmax(np, logits, axis=0).T
        return out

    def exact_moments(self, h: int, w: int) -> dict[str, np.ndarray]:
        """The mixture's exact first two moments, float64.

        'mean' (H, W, C): sum_k pi_k mu_k at every pixel. In the orthonormal Fourier basis
        the covariance is block-diagonal: 'spectrum' (H, W, C) is its diagonal
        sum_k pi_k lambda_k at every mode (channels uncorrelated there, since every component
        has independent channels and mean differences only live at DC), and 'dc_covariance'
        (C, C) the full DC block diag(sum_k pi_k lambda_k(0)) + H W sum_k pi_k d_k d_k^T,
        d_k = mu_k - mean (the between-component spread of the means; a constant image of
        value d has DC coefficient sqrt(H W) d)."""
        pi = np.asarray(self.weights)
        means = self._means()
        m = pi @ means
        spec = np.einsum('k,khwc->hwc', pi, self.spectra(h, w))
        d = means - m
        dc = np.diag(spec[0, 0]) + h * w * np.einsum('k,kc,kd->cd', pi, d, d)
        return {'mean': np.broadcast_to(m, (h, w, len(m))).copy(), 'spectrum': spec,
                'dc_covariance': dc}

    def target_moments(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """(per-channel mean (C,), per-mode variance (H, W, C)), float64: the exact moments
        (:meth:`exact_moments`) with each DC mode's own channel variance (the DC block's
        cross-channel covariance left out)."""
        mom = self.exact_moments(h, w)
        spectrum = mom['spectrum'].copy()
        spectrum[0, 0] = np.diag(mom['dc_covariance'])
        return mom['mean'][0, 0], spectrum

    def prior_mean(self, h: int, w: int) -> np.ndarray:
        """The mean image (H, W, C), float32: sum_k pi_k mu_k at every pixel."""
        return self.exact_moments(h, w)['mean'].astype(np.float32)

    def frechet_distance(self, samples: np.ndarray, chunk: int = 16) -> float:
        """Frechet distance between the samples' moments and the mixture's exact moments
        (:meth:`exact_moments`), in data units squared.

        With X_n = U(x_n - mean) (orthonormal 2-D DFT, float64), per channel and non-DC mode k
        the samples' mean m(k) = mean_n X_n(k) and variance s(k) = sum_n |X_n(k) - m(k)|^2 /
        (N - 1) give the 1-D term |m(k)|^2 + (sqrt(s(k)) - sqrt(lambda(k)))^2 with
        lambda = sum_k pi_k lambda_k; the DC mode (real, C channels) gives the C x C term
        |m_0|^2 + tr(S + T - 2 (S^1/2 T S^1/2)^1/2), S the samples' DC covariance (N - 1)
        and T the exact DC block. The samples' covariance is thus projected onto the target's
        block structure (cross-mode and, off DC, cross-channel sample covariances are
        dropped), as in :mod:`pds.analytic.fd`.

        This is the plain plug-in statistic: it is biased at small N (it is > 0 in
        expectation for exact samples, about (total variance) / N, and favours slightly
        under-dispersed samples: for a Gaussian target its expectation is lowest near the
        variance ratio (E sqrt(chi2_{n-1} / (n-1)))^2, about 0.9 at n = 6, in closed form in
        :meth:`pds.analytic.moments.PopulationMoments.expected_plugin_fd`). Compare samplers against
        :func:`frechet_noise_floor`, the same statistic on the same number of exact samples.
        """
        x = np.asarray(samples)
        n, h, w, c = x.shape
        if n < 2:
            raise ValueError(f'the Frechet distance needs at least 2 samples, got {n}')
        mom = self.exact_moments(h, w)
        s1 = np.zeros((h, w, c), np.complex128)
        s2 = np.zeros((h, w, c))
        dc = np.empty((n, c))  # the DC coefficients (real)
        for lo in range(0, n, chunk):
            spec = np.fft.fft2(np.asarray(x[lo: lo + chunk], np.float64) - mom['mean'],
                               axes=(1, 2), norm='ortho')
            s1 += spec.sum(axis=0)
            s2 += (np.abs(spec) ** 2).sum(axis=0)
            dc[lo: lo + len(spec)] = spec[:, 0, 0].real
        m = s1 / n
        var = np.maximum(s2 - n * np.abs(m) ** 2, 0.0) / (n - 1)
        off = np.ones((h, w), bool)
        off[0, 0] = False
        fd = float(np.sum(np.abs(m[off]) ** 2)
                   + np.sum((np.sqrt(var[off]) - np.sqrt(mom['spectrum'][off])) ** 2))
        dc_mean = dc.mean(axis=0)
        cov = np.atleast_2d(np.cov(dc, rowvar=False))
        return fd + float(dc_mean @ dc_mean) + _gaussian_trace_term(cov, mom['dc_covariance'])


def _gaussian_trace_term(a: np.ndarray, b: np.ndarray) -> float:
    """tr(A + B - 2 (A^1/2 B A^1/2)^1/2) for symmetric PSD A, B (small, float64)."""
    ev, vec = np.linalg.eigh(a)
    root = (vec * np.sqrt(np.clip(ev, 0.0, None))) @ vec.T
    inner = np.linalg.eigvalsh(root @ b @ root)
    return float(np.trace(a) + np.trace(b) - 2.0 * np.sum(np.sqrt(np.clip(inner, 0.0, None))))


# ------------------------------------------------------------------------------------------
# Shared numerics (numpy on the host, jax.numpy for the score)


def _softmax(xp, logits, axis):
    """softmax along ``axis`` after subtracting the largest logit, normalised by multiplying
    with the reciprocal of the sum (:func:`_component_terms` says why not by dividing). The
    softmax does not depend on the shift, so JAX does not differentiate it (as
    ``jax.nn.softmax``): the derivative of a max divides by the count of entries equal to it,
    which is 0 where XLA recomputes the logits with other rounding."""
    shift = xp.max(logits, axis=axis, keepdims=True)
    if xp is jnp:
        shift = jax.lax.stop_gradient(shift)
    e = xp.exp(logits - shift)
    return e * (1.0 / xp.sum(e, axis=axis, keepdims=True))


def _component_terms(xp, x, a, s, means, spectra, log_weights):
    """Per component k, for x (B, H, W, C), a and s (B,), means (K, C), half spectra
    (K, H, Wr, C), log weights (K,):

    - q_k = rfft2(x - a mu_k) / (a^2 lambda_k + s^2)  (K, B, H, Wr, C), unnormalised rfft2,
      so that the component's score is -irfft2(q_k);
    - logits_k = log pi_k + log N_k(x)  (K, B).

    Both divide by v_k through its reciprocal, computed once and multiplied in: XLA's
    algebraic simplifier turns a division by a broadcast into such a product in some programs
    and not in others (it did in the likelihood's program on 1 device and not in the same
    program on 4, whose results then differed by up to 3e-6 bits/dim), so a written-out
    product keeps an example's numbers independent of the device count.
    """
    b, h, w, c = x.shape
    hw = h * w
    spec = xp.fft.rfft2(x, axes=(1, 2))  # (B, H, Wr, C), unnormalised
    a = xp.reshape(a, (1, b, 1, 1, 1))
    s2 = xp.reshape(s, (1, b, 1, 1, 1)) ** 2
    # x - a mu_k differs from x only at DC: rfft2 of a constant image m is H W m at [0, 0]
    dc = np.zeros((h, w // 2 + 1, 1))
    dc[0, 0, 0] = hw
    resid = spec[None] - a * means[:, None, None, None, :] * xp.asarray(dc, x.dtype)
    var = a**2 * spectra[:, None] + s2  # (K, B, H, Wr, C)
    inv = 1.0 / var
    mult = xp.asarray(half_multiplicity(w)[:, None], x.dtype)  # (Wr, 1)
    quad = xp.sum(mult * (xp.real(resid) ** 2 + xp.imag(resid) ** 2) * inv, axis=(2, 3, 4))
    logdet = xp.sum(mult * xp.log(var), axis=(2, 3, 4))
    log_n = -0.5 * (quad / hw + logdet + hw * c * np.log(2.0 * np.pi))
    return resid * inv, log_weights[:, None] + log_n


def _scales(x: Array, a, s) -> tuple[Array, Array]:
    b = x.shape[0]
    a = jnp.broadcast_to(jnp.reshape(jnp.asarray(a, x.dtype), (-1,)), (b,))
    s = jnp.broadcast_to(jnp.reshape(jnp.asarray(s, x.dtype), (-1,)), (b,))
    return a, s


def mixture_log_density(variables: dict[str, Array], x: Array, a, s) -> Array:
    """log p_t(x) (B,) = logsumexp_k(log pi_k + log N_k(x)), x (B, H, W, C), a and s scalars
    or (B,); ``variables`` from :meth:`GaussianMixtureField.variables`."""
    a, s = _scales(x, a, s)
    _, logits = _component_terms(jnp, x, a, s, variables['means'], variables['spectra'],
                                 variables['log_weights'])
    return jax.scipy.special.logsumexp(logits, axis=0)


def _marginal_scales(sde: SDE, x: Array, t: Array) -> tuple[Array, Array]:
    a, s = sde.marginal_prob(jnp.ones((x.shape[0], 1, 1, 1), x.dtype), t)
    return a.reshape(-1).astype(x.dtype), jnp.reshape(s, (-1,)).astype(x.dtype)


def mixture_posterior_fn(sde: SDE, variables: dict[str, Array]
                         ) -> Callable[[Array, Array], Array]:
    """posterior(x, t) -> (B, K): the component probabilities of x under p_t."""

    def posterior(x: Array, t: Array) -> Array:
        a, s = _marginal_scales(sde, x, t)
        _, logits = _component_terms(jnp, x, a, s, variables['means'], variables['spectra'],
                                     variables['log_weights'])
        return jax.nn.softmax(logits, axis=0).T

    return posterior


def mixture_score_fn(sde: SDE, variables: dict[str, Array]) -> Callable[[Array, Array], Array]:
    """score(x, t) of the diffused mixture: x (B, H, W, C), t (B,) -> (B, H, W, C); the
    signature of :func:`pds.analytic.gaussian_field.exact_score_fn`."""

    def score(x: Array, t: Array) -> Array:
        h, w = x.shape[1], x.shape[2]
        a, s = _marginal_scales(sde, x, t)
        q, logits = _component_terms(jnp, x, a, s, variables['means'], variables['spectra'],
                                     variables['log_weights'])
        post = _softmax(jnp, logits, axis=0)  # (K, B), max-subtracted
        spec = jnp.sum(post[:, :, None, None, None] * q, axis=0)
        return -jnp.fft.irfft2(spec, s=(h, w), axes=(1, 2)).astype(x.dtype)

    return score


# ------------------------------------------------------------------------------------------
# Config


def _per_component(field: str, value, k: int) -> list:
    if isinstance(value, int | float):
        return [value] * k
    value = list(value)
    if len(value) != k:
        raise ConfigError(field, tuple(value), f'one entry per component ({k} in '
                          'model.mixture_weights)')
    return value


def mixture_from_config(config) -> GaussianMixtureField:
    """The mixture of ``config.model`` (mixture_weights, mixture_means: per-component
    per-channel tuples, mixture_variances / mixture_k0 / mixture_betas: one entry per
    component, a variance entry a number or a per-channel tuple) in data space (means
    2 mu - 1 and variances 4 v when data.centered)."""
    m = config.model
    try:
        weights = tuple(float(p) for p in m.mixture_weights)
    except (TypeError, ValueError):
        raise ConfigError('model.mixture_weights', m.mixture_weights,
                          'a tuple of component weights') from None
    k = len(weights)
    if not MIN_COMPONENTS <= k <= MAX_COMPONENTS:
        raise ConfigError('model.mixture_weights', weights,
                          f'{MIN_COMPONENTS} to {MAX_COMPONENTS} component weights')
    means = _per_component('model.mixture_means', m.mixture_means, k)
    variances = _per_component('model.mixture_variances', m.mixture_variances, k)
    k0s = _per_component('model.mixture_k0', m.mixture_k0, k)
    betas = _per_component('model.mixture_betas', m.mixture_betas, k)
    comps = []
    for mean, var, k0, beta in zip(means, variances, k0s, betas):
        mean = np.atleast_1d(np.asarray(mean, np.float64))
        var = np.asarray(var, np.float64)
        if var.size == 1:
            var = np.full(mean.shape, float(var))
        if var.shape != mean.shape:
            raise ConfigError('model.mixture_variances', tuple(variances),
                              'one variance (or one per channel) per component')
        if config.data.centered:
            mean, var = 2.0 * mean - 1.0, 4.0 * var
        comps.append(GaussianField(tuple(mean.tolist()), tuple(var.tolist()), float(k0),
                                   float(beta)))
    return GaussianMixtureField(tuple(comps), weights)


# ------------------------------------------------------------------------------------------
# Metrics

def band_variance_ratios(samples: np.ndarray, spectrum: np.ndarray) -> dict[str, float | None]:
    """:func:`pds.analytic.fd.band_variance_ratios` of samples (N, H, W, C): the geometric
    mean per band of s(k) / lambda(k), s the per-mode variance about the samples' own mean
    (N - 1 denominator) and lambda (H, W, C) the target's eigenvalues, each log ratio
    corrected for the small-N bias of a log sample variance (so 1 is exact in expectation).
    None with fewer than 2 samples."""
    x = np.asarray(samples, np.float64)
    if len(x) < 2:
        return dict.fromkeys(fd.BANDS)
    acc = fd.FourierMoments(mean=np.zeros(x.shape[-1]))
    acc.update(x)
    return fd.band_variance_ratios(acc.mean_and_variance()[1], spectrum, len(x))


def frechet_noise_floor(mixture: GaussianMixtureField, n: int, h: int, w: int,
                        draws: int = 5, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation over ``draws`` of the Frechet distance
    (:meth:`GaussianMixtureField.frechet_distance`) of n exact samples."""
    rng = np.random.default_rng(seed)
    vals = [mixture.frechet_distance(mixture.sample(rng, n, h, w)) for _ in range(draws)]
    return float(np.mean(vals)), float(np.std(vals))


def mixture_report(samples: np.ndarray, mixture: GaussianMixtureField,
                   floor_draws: int = 0, seed: int = 0) -> dict:
    """Quality of samples (N, H, W, C) in data space against the mixture (JSON-ready).

    - 'weights': the fraction of samples assigned to each component, a sample going to its
      most likely component under the data distribution (:meth:`~GaussianMixtureField.
      posterior` at t = 0); 'weights_se': binomial standard errors sqrt(p (1 - p) / N);
      'target_weights': pi; 'weights_z': (p - pi) / sqrt(pi (1 - pi) / N);
    - 'counts': samples assigned to each component;
    - 'band_variance_ratio': per component, computed on the samples assigned to it, the
      bias-corrected geometric mean of (per-mode sample variance) / lambda_k over the low,
      mid and high thirds of |k| (DC excluded: :func:`band_variance_ratios`); None for a
      component with fewer than 2 samples;
    - 'frechet_distance': :meth:`GaussianMixtureField.frechet_distance` (the plug-in
      statistic, biased at small N); with ``floor_draws`` > 0 also 'noise_floor' and
      'noise_floor_std' (:func:`frechet_noise_floor` with ``seed``).
    """
    x = np.asarray(samples, np.float64)
    n, h, w, _ = x.shape
    labels = np.argmax(mixture.posterior(x), axis=1)
    counts = np.bincount(labels, minlength=mixture.num_components)
    p = counts / n
    pi = np.asarray(mixture.weights)
    spectra = mixture.spectra(h, w)
    out = {
        'num_samples': int(n),
        'target_weights': pi.tolist(),
        'weights': p.tolist(),
        'weights_se': np.sqrt(p * (1 - p) / n).tolist(),
        'weights_z': ((p - pi) / np.sqrt(pi * (1 - pi) / n)).tolist(),
        'counts': counts.tolist(),
        'band_variance_ratio': [band_variance_ratios(x[labels == k], spectra[k])
                                for k in range(mixture.num_components)],
        'frechet_distance': mixture.frechet_distance(x) if n >= 2 else None,
    }
    if floor_draws > 0:
        out['noise_floor'], out['noise_floor_std'] = frechet_noise_floor(
            mixture, n, h, w, floor_draws, seed)
    return out

