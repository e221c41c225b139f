"""Run by tests/pds/likelihood/test_ode.py in a subprocess with 4 host devices: the likelihood
program on a 1-device and a 4-device mesh gives identical per-example results on the
Gaussian field (dopri5 with the exact divergence and with Rademacher and Gaussian Hutchinson
probes, Heun on a fixed grid; VE and VP; the score_sde, mean and Gaussian priors). On the
mixture XLA:CPU's code for the score's JVP rounds differently with the local batch (8 rows
against 2; measured up to 2e-6 bits/dim, for Euler, Heun and dopri5 alike), so there the two
must agree to 1e-5 bits/dim, a hundredth of the solver's tolerance in the tests. Prints
'identical'."""

import sys

import jax
import jax.numpy as jnp
import numpy as np

from pds.analytic.gaussian_field import GaussianField, exact_score_fn
from pds.analytic.mixture import GaussianMixtureField, mixture_score_fn
from pds.likelihood.divergence import Divergence
from pds.likelihood.ode import AdaptiveLikelihood, FixedStepLikelihood, ForwardGrid
from pds.likelihood.priors import make_prior
from pds.likelihood.program import build_likelihood
from pds.method.sde import VESDE, VPSDE
from pds.runtime.mesh import batch_sharded, data_mesh, replicate
from pds.runtime.python_gc import relax_collector
from pds.sampling.grid import noise_level_grid

relax_collector()

assert jax.device_count() == 4, jax.devices()
H, W, C, B = 4, 4, 2, 8
field = GaussianField((0.5, 0.4), (0.04, 0.03))
mix = GaussianMixtureField((field, GaussianField((0.7, 0.4), (0.02, 0.05), beta=1.5)),
                           (0.6, 0.4))
grid = noise_level_grid(VESDE(0.01, 20.0), 9, 1e-5, 'logsnr')
cases = [  # (target, score, sde, solver, prior, bitwise)
    (field, exact_score_fn, VESDE(0.01, 20.0),
     AdaptiveLikelihood(Divergence(0), 1e-5, rtol=1e-4, atol=1e-4), 'score_sde', True),
    (field, exact_score_fn, VESDE(0.01, 20.0),
     AdaptiveLikelihood(Divergence(2), 1e-5, rtol=1e-3, atol=1e-3), 'mean', True),
    (field, exact_score_fn, VPSDE(),
     AdaptiveLikelihood(Divergence(1, 'gaussian'), 1e-5, rtol=1e-3, atol=1e-3), 'gaussian',
     True),
    (field, exact_score_fn, VESDE(0.01, 20.0),
     FixedStepLikelihood(Divergence(1), ForwardGrid(grid.t[::-1].copy()), 'heun'),
     'score_sde', True),
    (mix, mixture_score_fn, VESDE(0.01, 20.0),
     FixedStepLikelihood(Divergence(1), ForwardGrid(grid.t[::-1].copy()), 'euler'), 'mean',
     False),
    (mix, mixture_score_fn, VESDE(0.01, 20.0),
     AdaptiveLikelihood(Divergence(2), 1e-5, rtol=1e-3, atol=1e-3), 'score_sde', False),
    (mix, mixture_score_fn, VESDE(0.01, 20.0),
     FixedStepLikelihood(Divergence(0), ForwardGrid(grid.t[::-1].copy()), 'heun'),
     'score_sde', False),
]
for target, score, sde, solver, prior_name, bitwise in cases:
    x = target.sample(np.random.default_rng(0), B, H, W).astype(np.float32)
    mean = target.prior_mean(H, W) if prior_name != 'score_sde' else None
    half = field.half_spectrum(H, W) if prior_name == 'gaussian' else None
    prior = make_prior(prior_name, sde, mean, half)
    outs = []
    for mesh in (data_mesh(jax.devices()[:1]), data_mesh()):
        prog = build_likelihood(sde, score, (H, W, C), B, mesh, solver, prior)
        xs = jax.device_put(jnp.asarray(x), batch_sharded(mesh))
        out = prog.run(replicate(target.variables(H, W), mesh), xs, seed=3, offset=16)
        outs.append({k: np.asarray(v) for k, v in out._asdict().items()})
    if bitwise:
        bad = [k for k in outs[0] if not np.array_equal(outs[0][k], outs[1][k])]
    else:
        gap = np.abs(outs[0]['logp'] - outs[1]['logp']).max() / (H * W * C * np.log(2))
        bad = [] if gap < 1e-5 else [f'logp ({gap:.2e} bits/dim)']
    if bad:
        print('differ:', bad, solver.summary(), prior_name)
        sys.exit(1)
    assert np.all(np.isfinite(outs[0]['logp'])) and np.all(outs[0]['nonfinite_at'] < 0)
print('identical')
