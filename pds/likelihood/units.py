"""Units of a log-likelihood, as score_sde reports them (``likelihood.py``, ``run_lib.py``).

For a model density p on data space of D = H W C dimensions, log p(x) in nats per image:

- nats/dim = -log p(x) / D;
- bits/dim = -log p(x) / (D ln 2) + offset.

Image data are 8-bit: score_sde dequantises them uniformly, x = (255 u + U[0, 1)) / 256 for
pixel values u in [0, 1], maps x to data space with the data scaler (2 x - 1 when
``data.centered``), and adds the offset log2(s) + 8, s the inverse scaler's slope (1/2
centered, else 1): 8 bits for the [0, 1] -> [0, 256) rescaling and log2(s) for the scaler's,
so the number is the bits/dim of the dequantised [0, 256) data, comparable with published
CIFAR-10 bits/dim. Continuous data (the exact targets: Gaussian fields and their mixtures)
are not dequantised and get no offset: the numbers are per dimension of data space itself.
"""

from __future__ import annotations

import math

import numpy as np

LN2 = math.log(2.0)


def dequantised(config) -> bool:
    """Whether the likelihood's data are 8-bit images (uniformly dequantised, with the
    offset): every dataset but the exact targets."""
    from pds.analytic.targets import TARGETS

    return config.data.dataset not in TARGETS


def bpd_offset(config) -> float:
    """log2(inverse scaler slope) + 8 for dequantised image data, 0 for continuous data."""
    if not dequantised(config):
        return 0.0
    slope = 0.5 if config.data.centered else 1.0
    return math.log2(slope) + 8.0


def bits_per_dim(logp: np.ndarray, dims: int, offset: float = 0.0) -> np.ndarray:
    """-log p / (D ln 2) + offset, float64."""
    return -np.asarray(logp, np.float64) / (dims * LN2) + offset


def nats_per_dim(logp: np.ndarray, dims: int) -> np.ndarray:
    """-log p / D, float64."""
    return -np.asarray(logp, np.float64) / dims
