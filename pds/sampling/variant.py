"""``sampling.solver_variant``: our form of a fast ODE solver, or its official code's.

- 'ours' (default): the solver as its module derives it (DPM-Solver++(3M) third order, UniPC
  ending with the denoiser at sigma_min, ...).
- 'reference': the update of the solver's official code with that code's defaults, on the
  same grid (:mod:`pds.sampling.dpm_solver`, :mod:`pds.sampling.unipc` say what differs and
  what "the same grid" means). Solvers whose official code we already match ignore it.

A solver's declared NFE(N) (:class:`pds.sampling.declaration.SolverSpec`) may depend on it:
:func:`variant_nfe`.
"""

from __future__ import annotations

from pds.runtime.errors import ConfigError, check_choice
from pds.sampling.grid import num_iterations

SOLVER_VARIANTS = ('ours', 'reference')


def solver_variant(config) -> str:
    """``sampling.solver_variant``, validated (one of :data:`SOLVER_VARIANTS`)."""
    variant = config.sampling.get('solver_variant', 'ours')
    check_choice('sampling.solver_variant', variant, SOLVER_VARIANTS)
    return variant


def variant_nfe(ours: tuple[int, int], reference: tuple[int, int]):
    """A declaration's ``nfe``: (a, b) of NFE(N) = a N + b under each variant."""
    return lambda sampling: reference if sampling.get('solver_variant', 'ours') == 'reference' \
        else ours


def reference_steps(config, order: int, method: str) -> int:
    """The grid's N for a reference variant of multistep ``order``: the official code runs
    N - 1 steps between the grid's N times and asserts steps >= order, so N >= order + 1."""
    n, _ = num_iterations(config)
    if n - 1 < order:
        steps = config.sampling.get('steps', None)
        field, value = (('sampling.steps', steps) if steps is not None
                        else ('sampling.speed_up', config.sampling.speed_up))
        raise ConfigError(field, value, f'a grid of at least {order + 1} times (this one has '
                          f"{n}) for sampling.method={method!r} with "
                          "sampling.solver_variant='reference' (its official code takes "
                          f'N - 1 >= {order} steps)')
    return n
