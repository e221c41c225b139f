"""Fixtures for the evaluation tests: pytorch-fid's InceptionV3 with random weights.

pytorch-fid's model classes subclass torchvision's Inception blocks. The CPU torch wheel we
install (requirements-test.txt) cannot load PyPI torchvision's compiled ops (built against CUDA
torch), so ``import torchvision`` fails in its ``__init__``. The model code needed here is pure
Python, so when the plain import fails we register a bare ``torchvision`` package object (its
``__init__`` not executed) and import ``torchvision.models`` from the installed files.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import pytest


def _import_torchvision_models() -> types.ModuleType:
    """Return ``torchvision.models``, via a bare package object if the real import fails."""
    try:
        import torchvision.models as tv_models
        return tv_models
    except Exception:  # any failure inside torchvision's __init__
        for name in [m for m in sys.modules if m == 'torchvision' or m.startswith('torchvision.')]:
            del sys.modules[name]
    spec = importlib.util.find_spec('torchvision')
    if spec is None or not spec.submodule_search_locations:
        raise ImportError('torchvision is not installed')
    pkg = types.ModuleType('torchvision')
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    pkg.__file__ = spec.origin
    sys.modules['torchvision'] = pkg
    pkg.__version__ = importlib.import_module('torchvision.version').__version__
    pkg.models = importlib.import_module('torchvision.models')
    return pkg.models


def _randomize(model, seed: int) -> None:
    """He-normal conv weights, BN params/statistics near identity, small fc: O(1) features."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('conv.weight'):
                p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / p[0].numel()) ** 0.5)
            elif name.endswith('bn.weight'):
                p.copy_(0.75 + 0.5 * torch.rand(p.shape, generator=gen))
            else:  # bn.bias, fc.weight, fc.bias
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith('running_mean'):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
            elif name.endswith('running_var'):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))


@pytest.fixture(scope='session')
def pytorch_fid_reference():
    """(InceptionV3 wrapper giving pool_3, full Inception3 with fc) of pytorch-fid, random."""
    torch = pytest.importorskip('torch', reason='torch not installed: pip install -r '
                                                'requirements-test.txt for the parity tests')
    try:
        tv_models = _import_torchvision_models()
        import pytorch_fid.inception as pfi
    except ImportError as e:
        pytest.skip(f'pytorch-fid / torchvision not importable ({e}): '
                    'pip install -r requirements-test.txt')
    torch.set_num_threads(2)
    inception3 = tv_models.inception.Inception3
    saved = (pfi.load_state_dict_from_url, inception3.load_state_dict, pfi.fid_inception_v3)
    try:
        # No download: construct the FID graph, skip its weight loading, randomize instead.
        pfi.load_state_dict_from_url = lambda *a, **k: {}
        inception3.load_state_dict = lambda self, *a, **k: None
        full = pfi.fid_inception_v3()
        inception3.load_state_dict = saved[1]
        _randomize(full, seed=0)
        full.eval()
        pfi.fid_inception_v3 = lambda: full
        wrapper = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    finally:
        pfi.load_state_dict_from_url, inception3.load_state_dict, pfi.fid_inception_v3 = saved
    return wrapper, full
