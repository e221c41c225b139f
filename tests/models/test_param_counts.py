"""Parameter counts of every released score_sde config (github.com/yang-song/score_sde, configs/)
and config sanity.

Counts of score_sde's own Flax models built from its configs are checked as given. The others
are derived:
* ve/cifar10_ncsnpp (discrete) = 62,758,915 - 128 (no Fourier W) - 128 * 512 (Dense_0 reads the
  128-d positional embedding instead of the 256-d Fourier one) = 62,693,251 (also in the table).
* vp/cifar10_ddpmpp, subvp/cifar10_ddpmpp_continuous: same network as vp/cifar10_ddpmpp_continuous
  (continuous/discrete and VP/subVP only change the labels fed to it): 61,804,419.
* vp/ddpm/cifar10_continuous, subvp/cifar10_ddpm_continuous: same DDPM network as vp/ddpm/cifar10:
  35,218,947.
* ve/ffhq_1024_ncsnpp_continuous: alias of ve/ffhq_ncsnpp_continuous: 105,785,896.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jax
import pytest

from configs.common import get_base_config
from models.registry import abstract_variables, param_count

pytestmark = pytest.mark.slow  # ~4 s per full-size config (tracing); left out of test-fast

EXPECTED = {
    've/cifar10_ncsnpp': 62_693_251,
    've/cifar10_ncsnpp_continuous': 62_758_915,
    've/cifar10_ncsnpp_deep_continuous': 107_587_075,
    've/bedroom_ncsnpp_continuous': 65_574_549,
    've/church_ncsnpp_continuous': 65_574_549,
    've/ffhq_256_ncsnpp_continuous': 65_574_549,
    've/celebahq_256_ncsnpp_continuous': 65_574_549,
    've/ffhq_ncsnpp_continuous': 105_785_896,
    've/ffhq_1024_ncsnpp_continuous': 105_785_896,
    'vp/cifar10_ddpmpp': 61_804_419,
    'vp/cifar10_ddpmpp_continuous': 61_804_419,
    'vp/cifar10_ddpmpp_deep_continuous': 106_632_579,
    'vp/ddpm/cifar10': 35_218_947,
    'vp/ddpm/cifar10_continuous': 35_218_947,
    'subvp/cifar10_ddpm_continuous': 35_218_947,
    'subvp/cifar10_ddpmpp_continuous': 61_804_419,
    'subvp/cifar10_ddpmpp_deep_continuous': 106_632_579,
}

REPO_ROOT = Path(__file__).resolve().parents[2]
SDE_OF_DIR = {'ve': 'vesde', 'vp': 'vpsde', 'subvp': 'subvpsde'}


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_param_count(name: str, load_config) -> None:
    variables = abstract_variables(load_config(name))
    assert set(variables) == {'params'}
    assert param_count(variables['params']) == EXPECTED[name]
    dtypes = {leaf.dtype.name for leaf in jax.tree_util.tree_leaves(variables)}
    assert dtypes == {'float32'}


def _flat_keys(cfg, prefix: str = '') -> set[str]:
    keys = set()
    for key, value in cfg.items():
        path = f'{prefix}{key}'
        keys.add(path)
        if hasattr(value, 'items'):
            keys |= _flat_keys(value, path + '.')
    return keys


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_config_fields(name: str, load_config) -> None:
    config = load_config(name)
    missing = _flat_keys(get_base_config()) - _flat_keys(config)
    assert not missing, f'{name} lacks base fields {sorted(missing)}'
    assert config.training.sde == SDE_OF_DIR[name.split('/')[0]]
    assert isinstance(config.training.n_jitted_steps, int)
    assert config.sampling.pds.freq_mask == ''
    if config.training.sde == 'vesde':
        assert (config.sampling.predictor, config.sampling.corrector) == (
            'reverse_diffusion', 'langevin')
        assert config.model.scale_by_sigma and not config.data.centered
    else:
        assert config.sampling.corrector == 'none' and config.data.centered
        assert (config.model.beta_min, config.model.beta_max) == (0.1, 20.0)
    tree = ast.parse((REPO_ROOT / 'configs' / f'{name}.py').read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split('.')[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or '').split('.')[0])
    assert 'torch' not in imported


def test_reference_table_values(load_config) -> None:
    """Noise levels, ladder sizes, SNR and widths of score_sde's released configs
    (github.com/yang-song/score_sde, configs/ve/)."""
    table = {
        've/cifar10_ncsnpp_deep_continuous': (32, 0.01, 50, 1000, 0.16, 128, 8),
        've/celebahq_256_ncsnpp_continuous': (256, 0.01, 348, 2000, 0.075, 128, 2),
        've/ffhq_256_ncsnpp_continuous': (256, 0.01, 348, 2000, 0.075, 128, 2),
        've/church_ncsnpp_continuous': (256, 0.01, 380, 2000, 0.075, 128, 2),
        've/bedroom_ncsnpp_continuous': (256, 0.01, 378, 2000, 0.075, 128, 2),
        've/ffhq_ncsnpp_continuous': (1024, 0.01, 1348, 2000, 0.15, 16, 1),
    }
    for name, (res, smin, smax, n, snr, nf, blocks) in table.items():
        c = load_config(name)
        got = (c.data.image_size, c.model.sigma_min, c.model.sigma_max, c.model.num_scales,
               c.sampling.snr, c.model.nf, c.model.num_res_blocks)
        assert got == (res, smin, smax, n, snr, nf, blocks), name
    assert load_config('ve/ffhq_ncsnpp_continuous').model.ch_mult == (1, 2, 4, 8, 16, 32, 32, 32)
