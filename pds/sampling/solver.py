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

What the rest of the project needs to know about a solver it reads from the solver's
declaration (:class:`pds.sampling.declaration.SolverSpec`), registered with its builder:

    @register_solver(SolverSpec(name='my_solver', kind='ODE', preconditioner='corrector', ...))
    def from_config(config, sde) -> MySolver: ...

The builder validates its own config fields; the preconditioner policy and the corrector of
``sampling.ode_corrector`` (:class:`pds.sampling.with_corrector.WithCorrector`, for the
solvers whose policy is 'corrector'; such a solver's state is x or a dict holding x under 'x',
and it defines ``step_nfe``) are applied here from the declaration. Every module of
:mod:`pds.sampling` is imported when the registry is first read, so a new solver is one file.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, Protocol

import jax.numpy as jnp

from pds.method.sde import SDE
from pds.runtime.errors import ConfigError, check_choice
from pds.runtime.registry import Registry
from pds.sampling.context import Context
from pds.sampling.declaration import KINDS, SolverSpec, merge_config_blocks
from pds.sampling.grid import Interval, TimeGrid, sampling_schedule

Array = jnp.ndarray
State = Any


class Solver(Protocol):
    def init(self, ctx: Context, x: Array) -> State: ...

    def step(self, ctx: Context, state: State, interval: Interval) -> State: ...

    def output(self, ctx: Context, state: State) -> Array: ...

    def summary(self) -> dict[str, Any]: ...


_REGISTRY = Registry('sampling.method')
_SPECS: dict[str, SolverSpec] = {}


def register_solver(spec: SolverSpec) -> Callable[[Callable], Callable]:
    """Register a builder ``from_config(config, sde) -> Solver`` under ``spec.name`` with its
    declaration (:class:`pds.sampling.declaration.SolverSpec`)."""
    def wrap(build: Callable) -> Callable:
        _SPECS[spec.name] = spec
        return _REGISTRY.register(spec.name)(build)
    return wrap


@functools.cache
def _register_solvers() -> None:
    """Import every module of :mod:`pds.sampling` once: a solver registers itself on import."""
    import pds.sampling as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f'{package.__name__}.{info.name}')


def solver_names() -> tuple[str, ...]:
    """Every registered ``sampling.method``, by kind (:data:`KINDS` order) and then name."""
    _register_solvers()
    return tuple(sorted(_REGISTRY.names(),
                        key=lambda name: (KINDS.index(_SPECS[name].kind), name)))


def solver_specs() -> tuple[SolverSpec, ...]:
    """Every registered declaration, in ``solver_names()`` order."""
    return tuple(_SPECS[name] for name in solver_names())


def solver_spec(method: str) -> SolverSpec:
    """The declaration of ``sampling.method`` = ``method`` (ConfigError naming the field)."""
    check_choice('sampling.method', method, solver_names())
    return _SPECS[method]


def corrected_methods() -> tuple[str, ...]:
    """The fixed-step solvers a Langevin corrector may follow (``sampling.ode_corrector``)."""
    return tuple(spec.name for spec in solver_specs() if spec.corrected)


def solver_config_blocks() -> dict[str, dict[str, Any]]:
    """The solvers' own config blocks under ``sampling`` ({block: {field: default}}), merged
    over every registered declaration (what :func:`declared_config_blocks` reads from source
    for the configs; a test holds the two equal)."""
    return merge_config_blocks({spec.name: spec.config_fields or {}
                                for spec in solver_specs()})


def require_no_preconditioner(config, spec: SolverSpec) -> None:
    """ConfigError unless ``sampling.precondition`` is 'none', for a solver whose policy keeps
    M out of its own step (the declaration's ``preconditioner_reason`` says why). A solver
    that a corrector may follow accepts 'pds' with ``sampling.ode_corrector`` set: M then goes
    to the corrector only, the solver's own step sees M = I (:mod:`pds.sampling.with_corrector`)."""
    if config.sampling.precondition == 'none' or spec.preconditioner == 'sde':
        return
    if spec.corrected and config.sampling.get('ode_corrector', 'none') != 'none':
        return
    raise ConfigError('sampling.precondition', config.sampling.precondition,
                      f"'none' with sampling.method={spec.name!r} "
                      f'({spec.preconditioner_reason})'
                      + ("; or set sampling.ode_corrector='langevin' or 'ald': M then goes "
                         'to a Langevin corrector after each step only'
                         if spec.corrected else ''))


def takes_own_steps(solver) -> bool:
    """The solver runs in the while loop (it defines ``max_steps``), choosing its own steps."""
    return getattr(solver, 'max_steps', None) is not None


def loop_length(solver, grid: TimeGrid) -> int:
    """The most iterations the solver's loop runs: the grid's N for the scan, or the
    solver's ``max_steps(grid)`` for the while loop."""
    return int(solver.max_steps(grid)) if takes_own_steps(solver) else grid.num_steps


def solver_from_config(config, sde: SDE) -> Solver:
    """The solver of ``sampling.method`` built from its config fields, wrapped with the
    corrector of ``sampling.ode_corrector`` unless that is 'none'."""
    from pds.sampling import with_corrector
    from pds.sampling.variant import solver_variant

    method = config.sampling.method
    spec = solver_spec(method)
    corrector = with_corrector.ode_corrector_of(config)
    if corrector != 'none' and not spec.corrected:
        raise ConfigError('sampling.ode_corrector', corrector,
                          f"'none' with sampling.method={method!r} (a corrector follows the "
                          'fixed-step ODE solvers: ' + ', '.join(corrected_methods()) + ')')
    require_no_preconditioner(config, spec)
    solver_variant(config)  # validated for every solver; those without one ignore it
    solver = _REGISTRY.get(method)(config, sde)
    if corrector == 'none':
        return solver
    return with_corrector.from_config(config, solver, sampling_schedule(config)[1].eps)
