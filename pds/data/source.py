"""The indexed-source interface every array data source implements (pipelines, photos)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class ArraySource:
    """Random-access examples: ``read(indices)`` -> float32 (n, H, W, C) in [0, 1].
    ``num_examples`` is None for an endless source (generated data)."""

    num_examples: int | None = None

    def read(self, indices: Sequence[int]) -> np.ndarray:
        raise NotImplementedError
