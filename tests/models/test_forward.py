"""Real forward passes of reduced-width networks (CPU, small): shapes, finiteness, options."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.registry import abstract_variables, create_model, init_variables, param_count


def _load(name: str):
    return importlib.import_module('configs.' + name.replace('/', '.')).get_config()


def _small_ncsnpp(name: str = 've/cifar10_ncsnpp_continuous', **model_overrides):
    config = _load(name)
    config.model.nf = 16
    config.model.ch_mult = (1, 2, 2)
    config.model.num_res_blocks = 1
    for key, value in model_overrides.items():
        config.model[key] = value
    return config


def random_variables(config, seed: int = 0) -> dict:
    """Variables with the model's tree, filled with N(0, 0.05^2) (norm scales: 1).

    Cheaper than ``init`` on CPU (whose eager forward pass dominates the test time); the
    values only need to be generic for shape/finiteness checks.
    """
    rng = np.random.default_rng(seed)
    abstract = abstract_variables(config)

    def fill(path, leaf):
        name = str(getattr(path[-1], 'key', path[-1]))
        if name in ('scale', 'gamma', 'alpha'):
            return jnp.ones(leaf.shape, leaf.dtype)
        return jnp.asarray(0.05 * rng.standard_normal(leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract)


def _run(config, labels, train: bool = False, batch: int = 2, variables=None):
    if variables is None:
        variables = random_variables(config)
    size, chans = config.data.image_size, config.data.num_channels
    x = jax.random.uniform(jax.random.PRNGKey(1), (batch, size, size, chans))
    model = create_model(config)
    rngs = {'dropout': jax.random.PRNGKey(2)} if train else None
    apply = jax.jit(lambda v, x, y: model.apply(v, x, y, train=train, rngs=rngs))
    return apply(variables, x, labels), variables


@pytest.mark.slow
def test_ncsnpp_cifar10_reduced_forward() -> None:
    config = _small_ncsnpp()
    sigmas = jnp.array([0.5, 20.0])
    out, variables = _run(config, sigmas)
    assert out.shape == (2, 32, 32, 3) and out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))
    # scale_by_sigma: output of the unscaled net divided by sigma.
    config.model.scale_by_sigma = False
    raw, _ = _run(config, sigmas, variables=variables)
    # Two compilations of one float32 network differ by rounding, most of it in the Fourier
    # time features: sin/cos of arguments up to 2 pi 16 |W| log sigma ~ 1e3, whose float32
    # rounding (ulp ~ 6e-5) the network carries to ~1e-4 of an example's output scale. A wrong
    # scaling would be off by a factor sigma (0.5 or 20): per example, 1e-3 of its scale.
    scale = jnp.abs(out).max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_array_less(jnp.abs(out - raw / sigmas[:, None, None, None]),
                                 jnp.broadcast_to(1e-3 * scale, out.shape))


@pytest.mark.slow
def test_init_variables_real_init() -> None:
    """``init_variables`` on a tiny network: float32 params, score_sde initial values."""
    config = _small_ncsnpp()
    config.model.ch_mult = (1,)
    config.data.image_size = 8
    variables = init_variables(config, jax.random.PRNGKey(0))
    params = variables['params']
    assert set(variables) == {'params'}
    np.testing.assert_array_equal(params['Conv_0']['bias'], 0.0)
    assert float(jnp.std(params['GaussianFourierProjection_0']['W'])) > 4.0  # N(0, 16^2)
    # init_scale 0 -> variance scale 1e-10: |w| <= sqrt(3e-10 / fan_avg)
    assert float(jnp.max(jnp.abs(params['Conv_1']['kernel']))) < 1e-5
    np.testing.assert_array_equal(params['GroupNorm_0']['scale'], 1.0)


@pytest.mark.slow
@pytest.mark.parametrize('overrides', [
    # 256-style pyramids (output_skip / input_skip, cat combine), at 32x32.
    {'progressive': 'output_skip', 'progressive_input': 'input_skip',
     'progressive_combine': 'cat'},
    # Residual output pyramid (fused FIR up-conv) with DDPM++ blocks and FIR Up/Downsample.
    {'progressive': 'residual', 'progressive_input': 'residual', 'resblock_type': 'ddpm'},
])
def test_ncsnpp_variants_forward(overrides: dict) -> None:
    out, _ = _run(_small_ncsnpp(**overrides), jnp.array([0.1, 3.0]))
    assert out.shape == (2, 32, 32, 3)
    assert bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.slow
def test_ddpmpp_positional_forward_train_mode() -> None:
    config = _small_ncsnpp('vp/cifar10_ddpmpp_continuous')
    labels = jnp.array([10.0, 900.0])
    out, _ = _run(config, labels, train=True)  # dropout active, 'dropout' rng stream
    assert out.shape == (2, 32, 32, 3)
    assert bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.slow
def test_ddpm_reduced_forward() -> None:
    config = _load('vp/ddpm/cifar10')
    config.model.nf = 32
    config.model.ch_mult = (1, 2)
    config.model.num_res_blocks = 1
    out, _ = _run(config, jnp.array([0.0, 999.0]))
    assert out.shape == (2, 32, 32, 3)
    assert bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.slow
def test_ncsnv2_reduced_forward() -> None:
    config = _load('ve/cifar10_ncsnpp')
    config.model.name = 'ncsnv2_64'
    config.model.nf = 8
    config.model.normalization = 'InstanceNorm++'
    config.model.nonlinearity = 'elu'
    config.model.interpolation = 'bilinear'
    config.model.num_scales = 232
    out, variables = _run(config, jnp.array([0, 231]))
    assert out.shape == (2, 32, 32, 3)
    assert bool(jnp.all(jnp.isfinite(out)))
    names = list(variables['params'])
    assert names[0] == 'Conv_0' and 'ResidualBlock_7' in names and 'RefineBlock_3' in names
    norm = variables['params']['InstanceNorm2dPlus_0']
    assert {k: v.shape for k, v in norm.items()} == {
        'alpha': (1, 1, 1, 8), 'gamma': (1, 1, 1, 8), 'beta': (1, 1, 1, 8)}
    assert param_count(variables) == param_count(abstract_variables(config))


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_params() -> None:
    config = _small_ncsnpp()
    sigmas = jnp.array([0.5, 20.0])
    ref, variables = _run(config, sigmas)
    config.model.dtype = 'bfloat16'
    assert {leaf.dtype.name for leaf in jax.tree_util.tree_leaves(
        abstract_variables(config))} == {'float32'}
    out, _ = _run(config, sigmas, variables=variables)
    assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
    rel = float(jnp.linalg.norm(out - ref) / jnp.linalg.norm(ref))
    assert rel < 0.1
