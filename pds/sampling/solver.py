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
``summary()`` is what run reports record of the solver's settings.

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
from pds.sampling.grid import Interval

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
    )


ODE_REASON = 'a preconditioner in an ODE drift changes the distribution the flow produces'


def require_no_preconditioner(config, method: str, reason: str = ODE_REASON) -> None:
    """ConfigError unless ``sampling.precondition`` is 'none': a preconditioner may not enter
    an ODE solver's drift (M M^T there changes the distribution the flow produces), nor
    whatever else ``reason`` names."""
    if config.sampling.precondition != 'none':
        raise ConfigError('sampling.precondition', config.sampling.precondition,
                          f"'none' with sampling.method={method!r} ({reason})")


def solver_names() -> tuple[str, ...]:
    _register_solvers()
    return _REGISTRY.names()


def solver_from_config(config, sde: SDE) -> Solver:
    """The solver of ``sampling.method`` built from its config fields."""
    _register_solvers()
    return _REGISTRY.get(config.sampling.method)(config, sde)
