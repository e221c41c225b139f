"""The solver API: a sampler is ``init``, ``step`` and ``output`` over any pytree state.

    state = solver.init(ctx, x_T)                  x_T (B, H, W, C), the prior draw
    state = solver.step(ctx, state, interval)      one step over [interval.t, interval.t_next]
    x_0   = solver.output(ctx, state)

A loop (:mod:`pds.sampling.loops`) runs it: a ``lax.scan`` over a time grid, or a
``lax.while_loop`` for solvers that control their own steps; the loop counts score
evaluations per example. A solver that can finish early per example also defines
``done(ctx, state) -> (B,) bool``; the while loop then freezes finished examples (their
state leaves must carry the batch on their leading axis) and stops when all are done.
A solver that defines ``max_steps(grid) -> int`` runs in the while loop (at most that many
steps), every other one in the scan. A solver whose step evaluates the score a number of
times that depends on the interval defines ``step_nfe(interval) -> int32`` for the count.
``output`` may evaluate the score too (a final denoising step); the loops count those calls.
``summary()`` is what run reports record of the solver's settings. A solver whose prior
draw must stay white whatever the preconditioner defines ``white_prior = True`` (an ODE solver
whose preconditioner goes to a corrector only).

``sampling.ode_corrector`` ('langevin' or 'ald'; default 'none') wraps a fixed-step ODE solver
(``CORRECTED_METHODS``) in :class:`pds.sampling.with_corrector.WithCorrector`: a Langevin
corrector at the end of each step, the only place ``sampling.precondition='pds'`` then goes.
Such a solver's state is x or a dict holding x under 'x', and it defines ``step_nfe``.

Solvers register under their ``sampling.method`` name with a builder
``from_config(config, sde) -> Solver`` (validating their own fields); adding a solver is one
file plus its import in :func:`_register_solvers`.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax.numpy as jnp

from pds.method.sde import SDE
from pds.runtime.errors import ConfigError
from pds.runtime.registry import Registry
from pds.sampling.context import Context
from pds.sampling.grid import Interval, TimeGrid, sampling_schedule

Array = jnp.ndarray
State = Any


class Solver(Protocol):
    def init(self, ctx: Context, x: Array) -> State: ...

    def step(self, ctx: Context, state: State, interval: Interval) -> State: ...

    def output(self, ctx: Context, state: State) -> Array: ...

    def summary(self) -> dict[str, Any]: ...


_REGISTRY = Registry('sampling.method')
register_solver = _REGISTRY.register


def _register_solvers() -> None:
    from pds.sampling import (  # noqa: F401  (registration side effects)
        adaptive_ode,
        adaptive_sde,
        dpm_solver,
        edm,
        pc,
        pf_euler,
        unipc,
    )


ODE_REASON = 'a preconditioner in an ODE drift changes the distribution the flow produces'
# the fixed-step ODE solvers a Langevin corrector may follow (sampling.ode_corrector)
CORRECTED_METHODS = ('pf_euler', 'ddim', 'edm_heun', 'edm_stochastic', 'dpm_solver_2m',
                     'dpm_solver_3m')


def require_no_preconditioner(config, method: str, reason: str = ODE_REASON) -> None:
    """ConfigError unless ``sampling.precondition`` is 'none': a preconditioner may not enter
    an ODE solver's drift (M M^T there changes the distribution the flow produces), nor
    whatever else ``reason`` names. With ``sampling.ode_corrector`` set (a method of
    ``CORRECTED_METHODS``) 'pds' is accepted: M goes to the corrector only, the solver's own
    step sees M = I (:mod:`pds.sampling.with_corrector`)."""
    if config.sampling.precondition == 'none':
        return
    if method in CORRECTED_METHODS and config.sampling.get('ode_corrector', 'none') != 'none':
        return
    raise ConfigError('sampling.precondition', config.sampling.precondition,
                      f"'none' with sampling.method={method!r} ({reason})"
                      + ("; or set sampling.ode_corrector='langevin' or 'ald': M then goes "
                         'to a Langevin corrector after each step only'
                         if method in CORRECTED_METHODS else ''))


def takes_own_steps(solver) -> bool:
    """The solver runs in the while loop (it defines ``max_steps``), choosing its own steps."""
    return getattr(solver, 'max_steps', None) is not None


def loop_length(solver, grid: TimeGrid) -> int:
    """The most iterations the solver's loop runs: the grid's N for the scan, or the
    solver's ``max_steps(grid)`` for the while loop."""
    return int(solver.max_steps(grid)) if takes_own_steps(solver) else grid.num_steps


def solver_names() -> tuple[str, ...]:
    _register_solvers()
    return _REGISTRY.names()


def solver_from_config(config, sde: SDE) -> Solver:
    """The solver of ``sampling.method`` built from its config fields, wrapped with the
    corrector of ``sampling.ode_corrector`` unless that is 'none'."""
    from pds.sampling import with_corrector

    _register_solvers()
    method = config.sampling.method
    corrector = with_corrector.ode_corrector_of(config)
    if corrector != 'none' and method in _REGISTRY.names() and method not in CORRECTED_METHODS:
        raise ConfigError('sampling.ode_corrector', corrector,
                          f"'none' with sampling.method={method!r} (a corrector follows the "
                          'fixed-step ODE solvers: ' + ', '.join(CORRECTED_METHODS) + ')')
    solver = _REGISTRY.get(method)(config, sde)
    if corrector == 'none':
        return solver
    return with_corrector.from_config(config, solver, sampling_schedule(config)[1].eps)
