"""Run by tests/pds/likelihood/test_ode.py in a subprocess with 4 host devices: the likelihood
program on a 1-device and a 4-device mesh gives bit-identical per-example results (every
output: log-density, its two terms, end point, NFE, steps) on the Gaussian field (dopri5 with
the exact divergence and with Rademacher and Gaussian Hutchinson probes, Heun on a fixed
grid; VE and VP; the score_sde, mean and Gaussian priors) and on the mixture (Euler with a
Rademacher probe, dopri5 with two probes, Heun with the exact divergence; Euler on a
three-component mixture of 6x6x3 images, where a differentiated max in the softmax gave NaN
divergences), all finite. Prints 'identical'."""

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
H, W, B = 4, 4, 8
field = GaussianField((0.5, 0.4), (0.04, 0.03))
mix = GaussianMixtureField((field, GaussianField((0.7, 0.4), (0.02, 0.05), beta=1.5)),
                           (0.6, 0.4))
# three components on 6x6x3 images (a non-power-of-two number of pixels)
mix3 = GaussianMixtureField((GaussianField((0.5, 0.4, 0.3), (0.04, 0.03, 0.02)),
                             GaussianField((0.7, 0.4, 0.1), (0.02, 0.05, 0.01), beta=1.5),
                             GaussianField((0.2, 0.6, 0.5), (0.03,) * 3, k0=2.0)),
                            (0.5, 0.3, 0.2))
grid = noise_level_grid(VESDE(0.01, 20.0), 9, 1e-5, 'logsnr')
cases = [  # (target, score, sde, solver, prior)
    (field, exact_score_fn, VESDE(0.01, 20.0),
     AdaptiveLikelihood(Divergence(0), 1e-5, rtol=1e-4, atol=1e-4), 'score_sde'),
    (field, exact_score_fn, VESDE(0.01, 20.0),
     AdaptiveLikelihood(Divergence(2), 1e-5, rtol=1e-3, atol=1e-3), 'mean'),
    (field, exact_score_fn, VPSDE(),
     AdaptiveLikelihood(Divergence(1, 'gaussian'), 1e-5, rtol=1e-3, atol=1e-3), 'gaussian'),
    (field, exact_score_fn, VESDE(0.01, 20.0),
     FixedStepLikelihood(Divergence(1), ForwardGrid(grid.t[::-1].copy()), 'heun'),
     'score_sde'),
    (mix, mixture_score_fn, VESDE(0.01, 20.0),
     FixedStepLikelihood(Divergence(1), ForwardGrid(grid.t[::-1].copy()), 'euler'), 'mean'),
    (mix, mixture_score_fn, VESDE(0.01, 20.0),
     AdaptiveLikelihood(Divergence(2), 1e-5, rtol=1e-3, atol=1e-3), 'score_sde'),
    (mix, mixture_score_fn, VESDE(0.01, 20.0),
     FixedStepLikelihood(Divergence(0), ForwardGrid(grid.t[::-1].copy()), 'heun'),
     'score_sde'),
    (mix3, mixture_score_fn, VESDE(0.01, 20.0),
     FixedStepLikelihood(Divergence(1), ForwardGrid(grid.t[::-1].copy()), 'euler'), 'mean'),
]
for target, score, sde, solver, prior_name in cases:
    h, w = (6, 6) if target is mix3 else (H, W)
    x = target.sample(np.random.default_rng(0), B, h, w).astype(np.float32)
    mean = target.prior_mean(h, w) if prior_name != 'score_sde' else None
    half = field.half_spectrum(h, w) if prior_name == 'gaussian' else None
    prior = make_prior(prior_name, sde, mean, half)
    outs = []
    for mesh in (data_mesh(jax.devices()[:1]), data_mesh()):
        prog = build_likelihood(sde, score, x.shape[1:], B, mesh, solver, prior)
        xs = jax.device_put(jnp.asarray(x), batch_sharded(mesh))
        out = prog.run(replicate(target.variables(h, w), mesh), xs, seed=3, offset=16)
        outs.append({k: np.asarray(v) for k, v in out._asdict().items()})
    bad = [k for k in outs[0] if not np.array_equal(outs[0][k], outs[1][k])]
    if bad:
        print('differ:', bad, solver.summary(), prior_name)
        sys.exit(1)
    assert np.all(np.isfinite(outs[0]['logp'])) and np.all(outs[0]['nonfinite_at'] < 0)
print('identical')
