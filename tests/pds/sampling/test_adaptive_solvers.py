"""The error-controlled solvers in the while loop: dopri5 against the closed-form flow of a
Gaussian field, adaptive_sde's convergence in distribution, their NFE counts, per-example
freezing, the step limit and the configuration rules. (1 vs 4 devices:
device_invariance_check.py.)"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs.analytic import field_16
from pds.analytic.gaussian_field import GaussianField, exact_score_fn
from pds.experiment.assemble import experiment_from_config
from pds.experiment.rounds import sample_rounds
from pds.method.precondition import Identity
from pds.method.sde import VESDE
from pds.runtime.errors import ConfigError
from pds.sampling.adaptive_ode import Dopri5
from pds.sampling.adaptive_sde import GottaGoFast
from pds.sampling.context import Context
from pds.sampling.declaration import config_value
from pds.sampling.loops import while_loop
from pds.sampling.noise import example_keys
from pds.sampling.solver import solver_config_blocks, solver_from_config

H, W, C = 8, 8, 3
FIELD = GaussianField()
SDE = VESDE(0.01, 20.0, 1000)
EPS = 1e-5
LAM = FIELD.half_spectrum(H, W)  # lambda (H, W // 2 + 1, C)
MU = np.asarray(FIELD.mean)


def context(index, seed: int = 0) -> Context:
    score = exact_score_fn(SDE, FIELD.variables(H, W))
    return Context(SDE, score, Identity(), example_keys(jnp.uint32(seed), jnp.asarray(index)),
                   (H, W, C), jnp.mean, jnp.any)


def prior(b: int, seed: int = 1, scale: float = 20.0) -> np.ndarray:
    """x_T = mu + scale z (the mean prior), float32."""
    z = np.random.default_rng(seed).standard_normal((b, H, W, C))
    return (MU + scale * z).astype(np.float32)


def sigma2(t: float) -> float:
    return (SDE.sigma_min * (SDE.sigma_max / SDE.sigma_min) ** t) ** 2


def closed_form_flow(x_T: np.ndarray, t: float) -> np.ndarray:
    """The VE probability-flow ODE's exact solution on the field, per orthonormal Fourier mode:
    with u = X - mu(k) and w(t) = lambda(k) + sigma(t)^2, the flow dX/dt = -1/2 (dw/dt) s =
    1/2 (dw/dt) u / w gives d log u = 1/2 d log w, so u(t) = u(T) sqrt(w(t) / w(T))."""
    u = np.fft.rfft2(np.asarray(x_T, np.float64) - MU, axes=(1, 2))
    u = u * np.sqrt((LAM + sigma2(t)) / (LAM + sigma2(1.0)))
    return MU + np.fft.irfft2(u, s=(H, W), axes=(1, 2))


def run(solver, x: np.ndarray, index=None):
    index = np.arange(len(x)) if index is None else index
    return jax.jit(lambda x: while_loop(solver, context(index), x, solver.step_limit))(
        jnp.asarray(x))


def test_dopri5_error_against_the_closed_form_flow():
    """Per-example max error against the exact flow at eps falls with the tolerance (about
    tol: 0.6-1.7 tol measured, asserted < 10 tol) and NFE grows. float32 suffices: the flow
    contracts x_T (~60) to the data scale (~1) by sqrt(w(eps) / w(T)) < 0.01, so rounding
    leaves ~1e-7, two decades below the tightest tolerance."""
    x = prior(4)
    want = closed_form_flow(x, EPS)
    errs, nfes = [], []
    for tol in (1e-2, 1e-3, 1e-4, 1e-5):
        out = run(Dopri5(eps=EPS, rtol=tol, atol=tol, noise_removal=False), x)
        err = np.abs(np.asarray(out.x, np.float64) - want).reshape(4, -1).max(axis=1)
        assert np.all(err < 10 * tol), (tol, err)
        errs.append(err)
        nfes.append(np.asarray(out.nfe))
    errs, nfes = np.array(errs), np.array(nfes)
    assert np.all(errs[1:] < errs[:-1]), errs
    assert np.all(nfes[1:] > nfes[:-1]), nfes
    assert np.all((nfes - 8) % 6 == 0), nfes  # 8 in the first attempt, 6 (FSAL) after


class _Times(Dopri5):
    """Dopri5 whose output is the state's time (broadcast to the image)."""

    def output(self, ctx, state):
        return jnp.broadcast_to(state['t'][:, None, None, None], state['x'].shape)


def test_dopri5_lands_on_eps_and_denoises_with_one_more_evaluation():
    """The last step lands exactly on eps; noise_removal adds Tweedie's denoiser at eps
    (X -> mu + u lambda / (lambda + sigma(eps)^2) per mode) and one evaluation."""
    x = prior(2)
    t = run(_Times(eps=EPS, rtol=1e-4, atol=1e-4), x).x
    np.testing.assert_array_equal(t, np.float32(EPS))
    plain = run(Dopri5(eps=EPS, rtol=1e-4, atol=1e-4, noise_removal=False), x)
    denoised = run(Dopri5(eps=EPS, rtol=1e-4, atol=1e-4), x)
    np.testing.assert_array_equal(denoised.nfe, plain.nfe + 1)
    u = np.fft.rfft2(np.asarray(plain.x, np.float64) - MU, axes=(1, 2))
    want = MU + np.fft.irfft2(u * LAM / (LAM + sigma2(EPS)), s=(H, W), axes=(1, 2))
    # float32 rounding of a value ~1 over a few FFTs: 1e-6 leaves a factor of ~10
    np.testing.assert_allclose(denoised.x, want, atol=1e-6)


@pytest.mark.parametrize('solver', [
    Dopri5(eps=EPS, rtol=1e-3, atol=1e-3),
    GottaGoFast(eps=EPS, eps_abs=1 / 255, eps_rel=0.1)], ids=['dopri5', 'adaptive_sde'])
def test_a_finished_example_does_not_depend_on_its_batch(solver):
    """Example 0 (global index 7, a small-amplitude x_T: few steps) in two batches with
    different companions that need more steps: identical result and NFE, though the loop ran
    on after it was done."""
    x0 = prior(1, seed=5, scale=0.5)
    runs = []
    for seed, index in ((11, [7, 1, 2, 3]), (12, [7, 20, 21, 22])):
        x = np.concatenate([x0, prior(3, seed=seed)])
        runs.append(run(solver, x, np.asarray(index)))
    for out in runs:
        assert int(out.nfe[1:].max()) > int(out.nfe[0]), out.nfe  # example 0 finished first
        assert np.all(np.isfinite(np.asarray(out.x)))
    np.testing.assert_array_equal(runs[0].x[0], runs[1].x[0])
    assert int(runs[0].nfe[0]) == int(runs[1].nfe[0])
    assert not np.any(np.asarray(runs[0].x[1:]) == np.asarray(runs[1].x[1:]))  # companions


def test_adaptive_sde_counts_two_evaluations_per_attempt():
    x = prior(4)
    plain = run(GottaGoFast(eps=EPS, eps_abs=1 / 255, eps_rel=0.2, noise_removal=False), x)
    nfe = np.asarray(plain.nfe)
    assert np.all(nfe % 2 == 0) and len(set(nfe.tolist())) > 1, nfe  # per-example steps
    out = run(GottaGoFast(eps=EPS, eps_abs=1 / 255, eps_rel=0.2), x)
    np.testing.assert_array_equal(out.nfe, nfe + 1)  # + the denoiser; same noise, same steps


@pytest.mark.parametrize('solver', [
    Dopri5(eps=EPS, step_limit=3),
    GottaGoFast(eps=EPS, eps_abs=1 / 255, step_limit=3)], ids=['dopri5', 'adaptive_sde'])
def test_an_example_short_of_eps_after_max_steps_is_flagged(solver):
    out = run(solver, prior(2))
    np.testing.assert_array_equal(out.nonfinite_at, [2, 2])
    assert np.all(np.isnan(np.asarray(out.x)))


def sde_config(eps_rel: float, pds: bool = False):
    config = field_16.get_config()
    config.data.image_size = H
    config.sampling.method = 'adaptive_sde'
    config.sampling.prior = 'mean'
    config.sampling.precondition = 'pds' if pds else 'none'
    config.sampling.pds.predictor_form = 'invariant'
    config.sampling.adaptive.eps_rel = eps_rel
    return config


def sampled_fd(config, n: int = 512) -> tuple[float, float, float]:
    """(unbiased FD, its standard error, mean NFE) of n samples."""
    exp = experiment_from_config(config)
    res = sample_rounds(exp, solver_from_config(config, exp.sde), config, n, n)
    spectrum = exp.field.spectrum(H, H)
    return (res.moments.unbiased_frechet_distance(spectrum),
            res.moments.unbiased_fd_standard_error(spectrum), res.nfe)


@pytest.mark.slow
@pytest.mark.parametrize('pds', [False, True], ids=['plain', 'pds_invariant'])
def test_adaptive_sde_converges_in_distribution(pds):
    """The sampled unbiased FD of 512 samples (8 x 8 field): at eps_rel = 0.9 the solver's bias
    is resolved (measured 8.3 SE plain, 8.4 with PDS; asserted > 3 SE), at eps_rel = 0.05 it is
    within 4 SE of 0 (a false alarm every ~16,000 runs), at about 5x the NFE. With PDS the
    invariant form keeps the marginals, so it converges to the data distribution too."""
    fd_loose, se_loose, nfe_loose = sampled_fd(sde_config(0.9, pds))
    fd_tight, se_tight, nfe_tight = sampled_fd(sde_config(0.05, pds))
    assert fd_loose > 3 * se_loose, (fd_loose, se_loose)
    assert abs(fd_tight) < 4 * se_tight, (fd_tight, se_tight)
    assert nfe_tight > 2 * nfe_loose, (nfe_loose, nfe_tight)


def test_dopri5_refuses_a_preconditioner():
    config = sde_config(0.1)
    config.sampling.method = 'dopri5'
    config.sampling.precondition = 'pds'
    with pytest.raises(ConfigError, match=r"sampling\.precondition='pds'.*dopri5.*ODE drift"):
        solver_from_config(config, SDE)
    config.sampling.precondition = 'none'
    solver = solver_from_config(config, SDE)
    assert isinstance(solver, Dopri5) and (solver.rtol, solver.atol) == (1e-5, 1e-5)
    assert solver.eps == EPS and solver.noise_removal


def test_adaptive_sde_allows_pds_in_the_invariant_form_only():
    config = sde_config(0.1, pds=True)
    assert isinstance(solver_from_config(config, SDE), GottaGoFast)
    config.sampling.pds.predictor_form = 'reference'
    with pytest.raises(ConfigError, match=r"sampling\.pds\.predictor_form='reference'.*"
                                          r"'invariant'.*wrong distribution"):
        solver_from_config(config, SDE)
    config.sampling.precondition = 'none'  # no preconditioner: the form does not matter
    assert isinstance(solver_from_config(config, SDE), GottaGoFast)


def test_adaptive_sde_eps_abs_default_is_one_uint8_level():
    config = sde_config(0.1)
    assert solver_from_config(config, SDE).eps_abs == pytest.approx(1 / 255)
    config.data.centered = True
    assert solver_from_config(config, SDE).eps_abs == pytest.approx(2 / 255)
    config.sampling.adaptive.eps_abs = 0.01
    assert solver_from_config(config, SDE).eps_abs == 0.01


@pytest.mark.parametrize('method,field,value,allowed', [
    ('dopri5', 'rtol', 0.0, r'\(0, 1\)'),
    ('dopri5', 'rtol', 1.5, r'\(0, 1\)'),
    ('dopri5', 'atol', -1e-5, r'\(0, 1000\]'),
    ('dopri5', 'max_steps', 0, r'\[1, 1000000\]'),
    ('dopri5', 'max_steps', 10.5, r'\[1, 1000000\]'),
    ('dopri5', 'safety', 0.0, r'\(0, 1\]'),
    ('adaptive_sde', 'eps_rel', 0.0, r'\(0, 1\)'),
    ('adaptive_sde', 'eps_abs', 0.0, r'\(0, 1000\]'),
    ('adaptive_sde', 'exponent', 0.3, r'\[0.5, 1\]'),
    ('adaptive_sde', 'h_init', 2.0, r'\(0, 0.99999\]'),
    ('adaptive_sde', 'max_steps', True, r'\[1, 1000000\]'),
])
def test_bad_adaptive_fields(method, field, value, allowed):
    config = sde_config(0.1)
    config.sampling.method = method
    block = {k: config_value(v) for k, v in solver_config_blocks()['adaptive'].items()}
    block[field] = value  # any type: what a hand-written config may hold
    config.sampling.adaptive = ml_collections.ConfigDict(block)
    with pytest.raises(ConfigError, match=rf'sampling\.adaptive\.{field}={value!r}: .*{allowed}'):
        solver_from_config(config, SDE)


def test_adaptive_sde_refuses_the_probability_flow_flag():
    config = sde_config(0.1)
    config.sampling.probability_flow = True
    with pytest.raises(ConfigError, match=r'sampling\.probability_flow=True.*dopri5'):
        solver_from_config(config, SDE)


def test_solver_checks_the_grid_eps():
    from pds.sampling.grid import time_grid

    with pytest.raises(ValueError, match=r'eps=1e-05.*grid ending at 0\.001'):
        Dopri5(eps=EPS).max_steps(time_grid(10, 1e-3))
    assert dataclasses.replace(Dopri5(eps=1e-3), step_limit=7).max_steps(
        time_grid(10, 1e-3)) == 7


def sample_mode_config(method: str, max_steps: int = 10000):
    config = field_16.get_config()
    config.data.image_size = H
    config.sampling.method = method
    config.sampling.prior = 'mean'
    config.sampling.precondition = 'none'
    config.sampling.adaptive.rtol = config.sampling.adaptive.atol = 1e-2
    config.sampling.adaptive.max_steps = max_steps
    config.eval.num_samples, config.eval.batch_size = 8, 4
    return config


@pytest.mark.slow
def test_sample_mode_reports_attempted_steps(tmp_path):
    """--mode=sample with dopri5: ``iterations`` counts the steps each example attempted (6
    evaluations each, FSAL, 8 in the first, + 1 for the final denoising), not the grid's N,
    and seconds_per_iteration divides by the loop's iterations over both rounds."""
    from pds.modes import sample as sample_mode

    m = sample_mode.run(sample_mode_config('dopri5'), str(tmp_path))
    assert isinstance(m['iterations'], int) and m['iterations'] < 100, m
    assert m['nfe'] == 6 * m['iterations'] + 2 + 1, m
    assert m['iterations_max'] == m['iterations']
    assert m['loop_iterations'] == m['rounds'] * m['iterations']
    assert 'iterations' not in m['sampler'] and m['sampler']['max_steps'] == 10000
    assert m['seconds_per_iteration'] > 0


@pytest.mark.slow
def test_sample_mode_names_max_steps_for_an_unfinished_example(tmp_path):
    from pds.modes import sample as sample_mode
    from pds.runtime.errors import RunError

    with pytest.raises(RunError, match=r'sampling\.adaptive\.max_steps=3 attempted steps'):
        sample_mode.run(sample_mode_config('adaptive_sde', max_steps=3), str(tmp_path))
