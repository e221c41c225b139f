"""score_sde's Flax parameter trees: top-level module order, leaf names and shapes.

The expected orders are written from the architecture description (module creation order of
score_sde), not from the implementation.
"""

from __future__ import annotations

import jax


def _shapes(tree: dict) -> dict:
    return jax.tree_util.tree_map(lambda leaf: tuple(leaf.shape), tree)


def _expected_ncsnpp_cifar(blocks: int) -> list[str]:
    """NCSN++ CIFAR-10: 4 levels (32, 16, 8, 4), attention at 16, residual input pyramid."""
    names = ['GaussianFourierProjection_0', 'Dense_0', 'Dense_1', 'Conv_0']
    counters = {'R': 0, 'A': 0, 'D': 0}

    def take(kind: str, prefix: str) -> str:
        name = f'{prefix}_{counters[kind]}'
        counters[kind] += 1
        return name

    res = 'ResnetBlockBigGANpp'
    for level in range(4):
        for _ in range(blocks):
            names.append(take('R', res))
            if level == 1:
                names.append(take('A', 'AttnBlockpp'))
        if level < 3:
            names += [take('R', res), take('D', 'Downsample')]
    names += [take('R', res), take('A', 'AttnBlockpp'), take('R', res)]
    for level in reversed(range(4)):
        names += [take('R', res) for _ in range(blocks + 1)]
        if level == 1:
            names.append(take('A', 'AttnBlockpp'))
        if level > 0:
            names.append(take('R', res))
    return [*names, 'GroupNorm_0', 'Conv_1']


def test_ncsnpp_cifar10_continuous_tree(load_config, init_order_and_shapes) -> None:
    order, variables = init_order_and_shapes(load_config('ve/cifar10_ncsnpp_continuous'))
    assert order == _expected_ncsnpp_cifar(blocks=4)
    p = _shapes(variables['params'])
    assert p['GaussianFourierProjection_0'] == {'W': (128,)}
    assert p['Dense_0'] == {'kernel': (256, 512), 'bias': (512,)}
    assert p['Conv_0'] == {'kernel': (3, 3, 3, 128), 'bias': (128,)}
    # First block at 16x16 widens 128 -> 256: 1x1 shortcut Conv_2.
    assert p['ResnetBlockBigGANpp_5'] == {
        'GroupNorm_0': {'scale': (128,), 'bias': (128,)},
        'Conv_0': {'kernel': (3, 3, 128, 256), 'bias': (256,)},
        'Dense_0': {'kernel': (512, 256), 'bias': (256,)},
        'GroupNorm_1': {'scale': (256,), 'bias': (256,)},
        'Conv_1': {'kernel': (3, 3, 256, 256), 'bias': (256,)},
        'Conv_2': {'kernel': (1, 1, 128, 256), 'bias': (256,)},
    }
    nin = {'W': (256, 256), 'b': (256,)}
    assert p['AttnBlockpp_0'] == {'GroupNorm_0': {'scale': (256,), 'bias': (256,)},
                                  'NIN_0': nin, 'NIN_1': nin, 'NIN_2': nin, 'NIN_3': nin}
    # Residual input pyramid: fused FIR conv, HWIO weight.
    assert p['Downsample_0'] == {'Conv2d_0': {'weight': (3, 3, 3, 128), 'bias': (128,)}}
    assert p['Downsample_1'] == {'Conv2d_0': {'weight': (3, 3, 128, 256), 'bias': (256,)}}
    # Down blocks (no width change) still project the resampled skip.
    assert p['ResnetBlockBigGANpp_4']['Conv_2'] == {'kernel': (1, 1, 128, 128), 'bias': (128,)}
    assert p['GroupNorm_0'] == {'scale': (128,), 'bias': (128,)}
    assert p['Conv_1'] == {'kernel': (3, 3, 128, 3), 'bias': (3,)}


def test_ncsnpp_256_tree(load_config, init_order_and_shapes) -> None:
    order, variables = init_order_and_shapes(load_config('ve/celebahq_256_ncsnpp_continuous'))
    # Encoder: 7 levels x 2 blocks, down-blocks followed by the input-skip Combine.
    assert order[:9] == ['GaussianFourierProjection_0', 'Dense_0', 'Dense_1', 'Conv_0',
                         'ResnetBlockBigGANpp_0', 'ResnetBlockBigGANpp_1',
                         'ResnetBlockBigGANpp_2', 'Combine_0', 'ResnetBlockBigGANpp_3']
    assert sum(n.startswith('Combine_') for n in order) == 6
    # Output pyramid: one GroupNorm + Conv head per level, the last one is the output.
    heads = [n for n in order if n.startswith(('GroupNorm_', 'Conv_'))]
    assert heads == ['Conv_0'] + [n for i in range(7) for n in (f'GroupNorm_{i}', f'Conv_{i + 1}')]
    assert order[-2:] == ['GroupNorm_6', 'Conv_7']
    assert not any(n.startswith(('Upsample', 'Downsample')) for n in order)  # no params
    p = _shapes(variables['params'])
    assert p['Combine_0'] == {'Conv_0': {'kernel': (1, 1, 3, 128), 'bias': (128,)}}
    assert p['Conv_7'] == {'kernel': (3, 3, 128, 3), 'bias': (3,)}
    assert p['Conv_1'] == {'kernel': (3, 3, 256, 3), 'bias': (3,)}
    assert p['AttnBlockpp_0']['NIN_3'] == {'W': (256, 256), 'b': (256,)}


def test_ddpm_cifar10_tree(load_config, init_order_and_shapes) -> None:
    order, variables = init_order_and_shapes(load_config('vp/ddpm/cifar10'))
    assert order[:12] == ['Dense_0', 'Dense_1', 'Conv_0', 'ResnetBlockDDPM_0',
                          'ResnetBlockDDPM_1', 'Downsample_0', 'ResnetBlockDDPM_2',
                          'AttnBlock_0', 'ResnetBlockDDPM_3', 'AttnBlock_1', 'Downsample_1',
                          'ResnetBlockDDPM_4']
    assert order[-5:] == ['ResnetBlockDDPM_19', 'ResnetBlockDDPM_20', 'ResnetBlockDDPM_21',
                          'GroupNorm_0', 'Conv_1']
    assert sum(n.startswith('Upsample_') for n in order) == 3
    p = _shapes(variables['params'])
    assert p['Dense_0'] == {'kernel': (128, 512), 'bias': (512,)}
    assert p['Downsample_0'] == {'Conv_0': {'kernel': (3, 3, 128, 128), 'bias': (128,)}}
    assert p['Upsample_0'] == {'Conv_0': {'kernel': (3, 3, 256, 256), 'bias': (256,)}}
    assert p['ResnetBlockDDPM_2']['NIN_0'] == {'W': (128, 256), 'b': (256,)}
    assert p['AttnBlock_0']['GroupNorm_0'] == {'scale': (256,), 'bias': (256,)}


def test_ddpmpp_has_no_fourier_and_plain_resampling(load_config, init_order_and_shapes) -> None:
    order, variables = init_order_and_shapes(load_config('vp/cifar10_ddpmpp_continuous'))
    assert order[:3] == ['Dense_0', 'Dense_1', 'Conv_0']
    assert not any(n.startswith(('GaussianFourier', 'Downsample', 'Combine')) for n in order)
    assert variables['params']['Dense_0']['kernel'].shape == (128, 512)
