import numpy as np
import pytest

from configs.analytic import ffhq_256
from pds.method.sde import VESDE, VPSDE
from pds.runtime.errors import ConfigError
from pds.sampling.grid import sampling_schedule


def test_reference_speed_up_schedule():
    config = ffhq_256.get_config()
    config.sampling.speed_up = 30
    sde, grid = sampling_schedule(config)
    assert isinstance(sde, VESDE) and sde.N == 66 and grid.num_steps == 66
    assert grid.eps == pytest.approx(3e-4)
    np.testing.assert_allclose(grid.t, np.linspace(1, 3e-4, 66), rtol=1e-6)
    np.testing.assert_array_equal(grid.index, np.arange(65, -1, -1))
    # the intended ladder index equals floor(t (N - 1)) wherever float64 resolves it
    np.testing.assert_array_equal(grid.index, np.floor(np.linspace(1, 3e-4, 66) * 65 + 1e-9))


def test_steps_override_and_vp_eps():
    config = ffhq_256.get_config()
    config.sampling.steps = 40
    sde, grid = sampling_schedule(config)
    assert sde.N == 40 and grid.eps == 1e-5
    config.training.sde = 'vpsde'
    config.sampling.steps = None
    config.sampling.speed_up = 4
    sde, grid = sampling_schedule(config)
    assert isinstance(sde, VPSDE) and sde.N == 500 and grid.eps == pytest.approx(4e-3)


@pytest.mark.parametrize('field,value', [('steps', 0), ('steps', -3), ('speed_up', 0.0),
                                         ('speed_up', 1e6)])
def test_bad_schedule(field, value):
    config = ffhq_256.get_config()
    config.sampling[field] = value
    with pytest.raises(ConfigError, match=f'sampling.{field}'):
        sampling_schedule(config)
