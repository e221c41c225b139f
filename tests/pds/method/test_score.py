"""Score wrapper: label conventions and scaling against closed forms (score_sde semantics)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from pds.method.score import get_model_fn, get_score_fn

sde_lib = pytest.importorskip('pds.method.sde')


class EchoLabels(nn.Module):
    """Outputs c + labels (broadcast over the image), ignoring x."""

    c: float = 0.0

    @nn.compact
    def __call__(self, x, labels, train: bool = False):
        return jnp.zeros_like(x) + self.c + labels.astype(jnp.float32)[:, None, None, None]


X = jnp.ones((3, 4, 4, 2))
T = jnp.array([1e-3, 0.37, 1.0])
EPS32 = float(np.finfo(np.float32).eps)


def _const(fn) -> np.ndarray:
    out = np.asarray(fn(X, T))
    assert out.shape == X.shape
    return out[:, 0, 0, 0]


def test_model_fn_passes_through() -> None:
    model = EchoLabels(c=2.0)
    out = get_model_fn(model, {})(X, T)
    np.testing.assert_allclose(out[:, 0, 0, 0], 2.0 + T, rtol=EPS32)  # one float32 add


def test_ve_continuous_labels_are_sigma() -> None:
    sde = sde_lib.VESDE(0.01, 50.0, 1000)
    got = _const(get_score_fn(sde, EchoLabels(), {}, continuous=True))
    # float32 0.01 * exp(t log 5000): ~t log 5000 eps32 (x2)
    np.testing.assert_allclose(got, 0.01 * (50.0 / 0.01) ** np.asarray(T),
                               rtol=2 * np.log(5000.0) * EPS32)


def test_ve_discrete_labels_are_ladder_indices() -> None:
    sde = sde_lib.VESDE(0.01, 50.0, 1000)
    got = _const(get_score_fn(sde, EchoLabels(), {}, continuous=False))
    np.testing.assert_array_equal(got, np.round((1.0 - np.asarray(T)) * 999))


def _vp_std(t: np.ndarray, b0: float = 0.1, b1: float = 20.0) -> np.ndarray:
    log_mean = -0.25 * t ** 2 * (b1 - b0) - 0.5 * t * b0
    return np.sqrt(1.0 - np.exp(2.0 * log_mean))


def test_vp_continuous_scaling() -> None:
    sde = sde_lib.VPSDE(0.1, 20.0, 1000)
    t = np.asarray(T, np.float64)
    got = _const(get_score_fn(sde, EchoLabels(c=0.5), {}, continuous=True))
    # float32 std = sqrt(1 - exp(2 m)) cancels: at t = 1e-3, 1 - exp(2 m) ~ 1.2e-4, so an ulp
    # of 1 is ~1e-3 of it, halved by the sqrt: ~5e-4 relative (rtol 2x that)
    np.testing.assert_allclose(got, -(0.5 + 999 * t) / _vp_std(t), rtol=1e-3)


def test_vp_discrete_scaling() -> None:
    sde = sde_lib.VPSDE(0.1, 20.0, 1000)
    t = np.asarray(T, np.float64)
    labels = t * 999
    betas = np.linspace(0.1 / 1000, 20.0 / 1000, 1000)
    idx = labels.astype(np.int64)
    var = (1.0 - np.cumprod(1.0 - betas))[idx]
    got = _const(get_score_fn(sde, EchoLabels(c=0.5), {}, continuous=False))
    # float32 cumprod of idx + 1 rounded alphas: ~(idx + 1) eps32 / 2 on 1 - var, relative to
    # var, halved by the sqrt (1.5e-4 at idx 0, where var = 1e-4)
    want = -(0.5 + labels) / np.sqrt(var)
    np.testing.assert_array_less(np.abs(got - want), (idx + 1) * EPS32 / (4 * var) * np.abs(want))


@pytest.mark.parametrize('continuous', [True, False])
def test_subvp_always_continuous_labels(continuous: bool) -> None:
    sde = sde_lib.subVPSDE(0.1, 20.0, 1000)
    t = np.asarray(T, np.float64)
    std = _vp_std(t) ** 2  # sub-VP marginal std: 1 - exp(2 log_mean)
    got = _const(get_score_fn(sde, EchoLabels(c=1.0), {}, continuous=continuous))
    # float32 1 - exp(2 m) cancels: an ulp of 1 over std (1.1e-4 at t = 1e-3): ~1.1e-3
    np.testing.assert_allclose(got, -(1.0 + 999 * t) / std, rtol=EPS32 / std.min())
