"""The exact-target protocol and registry (pds/analytic/targets.py): which config selects which
target, the moments each target declares against an independent Monte Carlo estimate, and the
errors that name the config field."""

import numpy as np
import pytest

from configs.analytic import cifar10, field_16, mixture_32
from configs.ve import gaussian_field_16_ncsnpp_small
from pds.analytic import targets
from pds.analytic.gaussian_field import GaussianField
from pds.analytic.mixture import GaussianMixtureField
from pds.runtime.errors import ConfigError


def test_the_config_names_select_the_targets():
    field = field_16.get_config()
    assert isinstance(targets.score_target(field), GaussianField)
    assert targets.has_exact_score(field)
    mixture = mixture_32.get_config()
    assert isinstance(targets.experiment_target(mixture), GaussianMixtureField)
    learned = gaussian_field_16_ncsnpp_small.get_config()  # a network trained on the field
    assert targets.score_target(learned) is None and not targets.has_exact_score(learned)
    assert isinstance(targets.experiment_target(learned), GaussianField)
    assert targets.experiment_target(learned) == targets.data_target(learned)
    real = cifar10.get_config()
    real.model.name, real.data.dataset = 'ncsnpp', 'npz'
    assert targets.experiment_target(real) is None
    with pytest.raises(ConfigError, match=r"data\.dataset.*'gaussian_field' or "
                                          r"'gaussian_mixture' for --mode=bench"):
        targets.check_known_distribution(real, '--mode=bench')
    targets.check_known_distribution(learned, '--mode=bench')


def test_only_the_field_declares_gaussian_modes():
    assert targets.target_names(gaussian_modes=True) == ('gaussian_field',)
    assert targets.target_names(gaussian_modes=False) == ('gaussian_mixture',)
    assert set(targets.target_names()) == set(targets.TARGETS)


def fourier_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(per-channel mean (C,), per-mode variance (H, W, C), its standard error) of samples
    (N, H, W, C) in the orthonormal DFT basis."""
    spec = np.fft.fft2(x, axes=(1, 2), norm='ortho')
    dev = np.abs(spec - spec.mean(axis=0)) ** 2
    return (x.mean(axis=(0, 1, 2)), dev.mean(axis=0),
            dev.std(axis=0) / np.sqrt(len(x)))


@pytest.mark.parametrize('config_module', [field_16, mixture_32])
def test_declared_moments_match_samples(config_module):
    target = targets.score_target(config_module.get_config())
    h, w, n = 4, 6, 20000
    x = target.sample(np.random.default_rng(0), n, h, w)
    mean, var = target.target_moments(h, w)
    assert mean.shape == (target.num_channels,) and var.shape == (h, w, target.num_channels)
    got_mean, got_var, se = fourier_moments(x)
    # the per-channel mean: the spatial average of N samples, its standard error from them
    mean_se = x.mean(axis=(1, 2)).std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(got_mean - mean) < 5 * mean_se)
    assert np.all(np.abs(got_var - var) < 5 * se)
    prior = target.prior_mean(h, w)
    assert prior.dtype == np.float32 and prior.shape == (h, w, target.num_channels)
    np.testing.assert_array_equal(prior, np.broadcast_to(mean.astype(np.float32), prior.shape))


def test_a_target_with_the_wrong_channel_count_names_its_means_field():
    config = mixture_32.get_config()
    config.data.num_channels = 1
    with pytest.raises(ConfigError, match=r'model\.mixture_means.*data\.num_channels=1'):
        targets.score_target(config)
    config = field_16.get_config()
    config.data.num_channels = 1
    with pytest.raises(ConfigError, match=r'model\.field_mean.*data\.num_channels=1'):
        targets.experiment_target(config)
