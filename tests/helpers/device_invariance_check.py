"""Run by test_sampler.py in a subprocess with 4 host devices: every predictor/corrector pair
(on VE or VP, each predictor and corrector on both) with PDS (frequency and space masks), the
ODE solvers (EDM Heun, DPM-Solver++(2M)) and EDM's stochastic sampler (churn noise from each
example's stream) on their noise-level grids with the mean prior, ODE solvers with a (PDS)
Langevin corrector after each step, a while-loop solver whose examples take different step
counts, and the adaptive solvers (dopri5, adaptive_sde with PDS), on a 1-device and a
4-device mesh; prints 'identical'."""

import sys

import jax
import numpy as np

from pds.analytic.gaussian_field import GaussianField, exact_score_fn
from pds.method import masks
from pds.method.pds_preconditioner import make_preconditioner
from pds.method.sde import VESDE, VPSDE
from pds.runtime.mesh import data_mesh, replicate
from pds.runtime.python_gc import relax_collector
from pds.sampling.grid import time_grid
from pds.sampling.pc import PredictorCorrector
from pds.sampling.sampler import build_sampler

relax_collector()

assert jax.device_count() == 4, jax.devices()
H, W, C, B = 8, 8, 2, 8
field = GaussianField(mean=(0.5, 0.4), variance=(0.04, 0.03))
x = field.sample(np.random.default_rng(0), 64, H, W)
precond = make_preconditioner(masks.frequency_gain(masks.frequency_statistic(x), 5.0),
                              masks.space_gain(masks.space_statistic(x), 5.0))
# Every predictor/corrector pair once, on VE or VP in turn, so that each predictor and each
# corrector also runs on both SDEs (the SDE sets coefficients only; the noise streams and the
# corrector's global-batch statistics are what the device count could change).
PREDICTORS = ('reverse_diffusion', 'euler_maruyama', 'ancestral_sampling')
CORRECTORS = ('langevin', 'ald', 'none')
SDES = (VESDE(0.01, 20.0, 12), VPSDE(N=24))
cases = [(pred, corr, SDES[(i + j) % 2]) for i, pred in enumerate(PREDICTORS)
         for j, corr in enumerate(CORRECTORS)]
assert {(p, type(s)) for p, _, s in cases} == {(p, type(s)) for p in PREDICTORS for s in SDES}
assert {(c, type(s)) for _, c, s in cases} == {(c, type(s)) for c in CORRECTORS for s in SDES}
for pred, corr, sde in cases:
    spec = PredictorCorrector(pred, corr, snr=0.16, n_steps_each=2)
    outs = []
    for mesh in (data_mesh(jax.devices()[:1]), data_mesh()):
        s = build_sampler(sde, time_grid(sde.N, 1e-3), exact_score_fn, (H, W, C), B, mesh, spec)
        v, p = replicate(field.variables(H, W), mesh), replicate(precond, mesh)
        outs.append(np.asarray(s(v, p, seed=3, offset=16)))
    if not np.array_equal(outs[0], outs[1]):
        print('differ', pred, corr, type(sde).__name__, np.abs(outs[0] - outs[1]).max())
        sys.exit(1)
    assert np.all(np.isfinite(outs[0]))

# The ODE solvers, with the mean prior (x_T shifted by alpha(T) mu), no preconditioner.
from pds.method.precondition import Identity  # noqa: E402
from pds.sampling.dpm_solver import DPMSolverPP  # noqa: E402
from pds.sampling.edm import EDMHeun, EDMStochastic  # noqa: E402
from pds.sampling.grid import noise_level_grid  # noqa: E402

mu = np.broadcast_to(np.asarray(field.mean, np.float32), (H, W, C))
for solver, kind, sde in ((EDMHeun(), 'karras', VESDE(0.01, 20.0, 12)),
                          (DPMSolverPP(3), 'logsnr', VPSDE(N=24)),
                          (EDMStochastic(6, s_churn=40.0, s_tmin=0.05, s_tmax=50.0),
                           'karras', VPSDE(N=24))):
    outs = []
    for mesh in (data_mesh(jax.devices()[:1]), data_mesh()):
        grid = noise_level_grid(sde, 6, 1e-3, kind)
        s = build_sampler(sde, grid, exact_score_fn, (H, W, C), B, mesh, solver, prior_mean=mu)
        v, p = replicate(field.variables(H, W), mesh), replicate(Identity(), mesh)
        outs.append(np.asarray(s(v, p, seed=3, offset=16)))
    if not np.array_equal(outs[0], outs[1]):
        print('differ', type(solver).__name__, type(sde).__name__)
        sys.exit(1)
    assert np.all(np.isfinite(outs[0]))

# An ODE solver with a Langevin corrector after each step, PDS in the corrector only (the
# corrector's step size is a global-batch statistic; the churn and corrector noise slots).
from pds.sampling.with_corrector import WithCorrector  # noqa: E402

for solver, kind, sde in ((WithCorrector(EDMStochastic(6, s_churn=40.0, s_tmin=0.05,
                                                       s_tmax=50.0), 'langevin', 0.16, 2, 1e-3),
                           'karras', VPSDE(N=24)),
                          (WithCorrector(DPMSolverPP(2), 'ald', 0.16, 1, 1e-3), 'logsnr',
                           VESDE(0.01, 20.0, 12))):
    outs = []
    for mesh in (data_mesh(jax.devices()[:1]), data_mesh()):
        grid = noise_level_grid(sde, 6, 1e-3, kind)
        s = build_sampler(sde, grid, exact_score_fn, (H, W, C), B, mesh, solver, prior_mean=mu)
        v, p = replicate(field.variables(H, W), mesh), replicate(precond, mesh)
        outs.append([np.asarray(a) for a in s.run(v, p, seed=3, offset=16)])
    if not (np.array_equal(outs[0][0], outs[1][0]) and np.array_equal(outs[0][1], outs[1][1])):
        print('differ: corrected', type(solver.inner).__name__, type(sde).__name__)
        sys.exit(1)
    assert np.all(np.isfinite(outs[0][0])), type(solver.inner).__name__

# The while loop: per-example step counts and a global stop, on 1 and 4 devices.
from tests.helpers.variable_steps import VariableSteps  # noqa: E402

sde = VESDE(0.01, 20.0, 12)
outs = []
for mesh in (data_mesh(jax.devices()[:1]), data_mesh()):
    s = build_sampler(sde, time_grid(sde.N, 1e-3), exact_score_fn, (H, W, C), B, mesh,
                      VariableSteps())
    outs.append([np.asarray(a) for a in s.run(replicate(field.variables(H, W), mesh),
                                              replicate(precond, mesh), seed=3, offset=16)])
if not (np.array_equal(outs[0][0], outs[1][0]) and np.array_equal(outs[0][1], outs[1][1])):
    print('differ: while loop', outs[0][1], outs[1][1])
    sys.exit(1)
assert set(outs[0][1].tolist()) <= {2, 3, 4} and len(set(outs[0][1].tolist())) > 1, outs[0][1]

# The adaptive solvers (while loop, per-example step control): samples and per-example NFE;
# adaptive_sde with PDS in the invariant form (the masks above).
from pds.sampling.adaptive_ode import Dopri5  # noqa: E402
from pds.sampling.adaptive_sde import GottaGoFast  # noqa: E402

for solver, pre in ((Dopri5(eps=1e-3, rtol=1e-3, atol=1e-3), Identity()),
                    (GottaGoFast(eps=1e-3, eps_abs=1 / 255, eps_rel=0.1), precond)):
    outs = []
    for mesh in (data_mesh(jax.devices()[:1]), data_mesh()):
        s = build_sampler(sde, time_grid(sde.N, 1e-3), exact_score_fn, (H, W, C), B, mesh,
                          solver, prior_mean=mu)
        outs.append([np.asarray(a) for a in s.run(replicate(field.variables(H, W), mesh),
                                                  replicate(pre, mesh), seed=3, offset=16)])
    if not (np.array_equal(outs[0][0], outs[1][0]) and np.array_equal(outs[0][1], outs[1][1])):
        print('differ:', type(solver).__name__, outs[0][1], outs[1][1])
        sys.exit(1)
    assert np.all(np.isfinite(outs[0][0])) and np.all(outs[0][2] < 0), type(solver).__name__
print('identical')
