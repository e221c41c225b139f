"""Files of the FID Inception for tests: random weights in the loader's format and reference
statistics in ours."""

from __future__ import annotations

import numpy as np

from evaluation import inception
from evaluation.inception import RESIZE_POLICY
from evaluation.inception_weights import save_params


def random_weights(path, seed: int = 0) -> None:
    """He-normal kernels, BN near identity, small fc: O(1) activations through the net."""
    rng = np.random.default_rng(seed)
    flat = {}
    for key, shape in inception.param_shapes().items():
        leaf = key.rsplit('/', 1)[1]
        if leaf == 'kernel':
            gain = 0.05 if key.startswith('fc/') else 1.0
            flat[key] = gain * rng.normal(size=shape) * (2.0 / np.prod(shape[:-1])) ** 0.5
        elif leaf == 'scale':
            flat[key] = rng.uniform(0.75, 1.25, shape)
        elif leaf == 'var':
            flat[key] = rng.uniform(0.5, 1.5, shape)
        else:  # BN bias / mean, fc bias
            flat[key] = 0.1 * rng.normal(size=shape)
    save_params(flat, path)


def write_ref(path, dim: int = 2048, features: bool = True, seed: int = 1) -> None:
    """Reference statistics in our format, optionally with the raw features (for KID)."""
    f = np.random.default_rng(seed).normal(size=(8, dim)).astype(np.float32)
    extra = {'features': f} if features else {}
    np.savez(path, mu=f.mean(0).astype(np.float64), sigma=np.cov(f.astype(np.float64),
                                                                 rowvar=False),
             num_images=np.int64(len(f)), resize=np.array(RESIZE_POLICY), **extra)
