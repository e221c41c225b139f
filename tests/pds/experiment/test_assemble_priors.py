"""The mean and Gaussian priors of a network's data, from a ``--mode=stats`` spectrum.npz
(``sampling.prior_stats``; pds/experiment/assemble.py)."""

import numpy as np
import pytest

from pds.analytic.gaussian_field import GaussianField
from pds.experiment.assemble import experiment_from_config
from pds.method.masks import power_spectrum
from pds.runtime.errors import ConfigError
from tests.helpers.tiny_train_config import get_config


def network_config(tmp_path, prior, centered=False, **arrays):
    config = get_config()
    h, c = config.data.image_size, config.data.num_channels
    field = GaussianField(mean=(0.5, 0.4, 0.3)[:c], variance=(0.04, 0.03, 0.02)[:c])
    x = field.sample(np.random.default_rng(0), 64, h, h)
    stats = {**power_spectrum(x), **arrays}  # the stats mode's own arrays of field samples
    np.savez(tmp_path / 'spectrum.npz', **stats)
    config.data.dataset, config.data.centered = 'npz', centered
    config.sampling.update(prior=prior, precondition='none', allow_random_init=True,
                           prior_stats=str(tmp_path / 'spectrum.npz'))
    return config, stats


@pytest.mark.parametrize('centered', [False, True])
def test_the_priors_take_the_stats_moments_in_model_units(tmp_path, centered):
    config, stats = network_config(tmp_path, 'gaussian', centered)
    exp = experiment_from_config(config)
    h, w, c = exp.image_shape
    mean, power = stats['mean'], stats['power_centered']
    if centered:  # x -> 2 x - 1
        mean, power = 2 * mean - 1, 4 * power
    np.testing.assert_array_equal(exp.prior_mean,
                                  np.broadcast_to(mean.astype(np.float32), (h, w, c)))
    np.testing.assert_array_equal(exp.prior_spectrum,
                                  np.moveaxis(power, 0, -1)[:, : w // 2 + 1].astype(np.float32))
    config.sampling.prior = 'mean'
    assert experiment_from_config(config).prior_spectrum is None


def test_a_stats_file_of_another_shape_is_one_config_error(tmp_path):
    config, _ = network_config(tmp_path, 'mean', mean=np.zeros(7))
    with pytest.raises(ConfigError, match=r'sampling\.prior_stats.*spectrum\.npz'):
        experiment_from_config(config)


def test_without_stats_a_networks_priors_are_measured_on_the_stats_images(tmp_path):
    """No sampling.prior_stats: the moments of the first sampling.pds.num_stat_images
    training images, as --mode=stats would write them."""
    config, _ = network_config(tmp_path, 'gaussian', centered=True)
    h, c = config.data.image_size, config.data.num_channels
    images = np.random.default_rng(3).random((40, h, h, c)).astype(np.float32)
    np.savez(tmp_path / 'images.npz', images=images)
    config.data.path, config.sampling.prior_stats = str(tmp_path / 'images.npz'), ''
    config.sampling.pds.num_stat_images = 24
    exp = experiment_from_config(config)
    want = power_spectrum(images[:24])
    mean, power = 2 * want['mean'] - 1, 4 * want['power_centered']  # centred model units
    np.testing.assert_allclose(exp.prior_mean, np.broadcast_to(mean, (h, h, c)), rtol=1e-6)
    np.testing.assert_allclose(exp.prior_spectrum, np.moveaxis(power, 0, -1)[:, : h // 2 + 1],
                               rtol=1e-5)
