"""Score networks (flax.linen) with score_sde's parameter trees.

Importing this package registers ``ncsnpp``, ``ddpm``, ``ncsnv2_64``, ``ncsnv2_128`` and
``ncsnv2_256`` in :mod:`models.registry`.
"""

from models import ddpm, ncsnpp, ncsnv2  # noqa: F401  (registration side effects)
from models.registry import (
    create_model,
    get_model,
    init_variables,
    param_count,
    register_model,
)

__all__ = ['create_model', 'get_model', 'init_variables', 'param_count', 'register_model']
