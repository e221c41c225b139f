"""What a solver declares about itself: one :class:`SolverSpec` registered with its builder.

Every list of solvers the project keeps is derived from these declarations
(:mod:`pds.sampling.solver`): the methods an ODE corrector may follow, the gates of the exact
moments engines (:mod:`pds.analytic.moments`), the bench presets and their NFE ladders, the
preconditioner checks of :func:`pds.sampling.solver.solver_from_config`, the solvers' config
blocks in :mod:`configs.common` and the README's sampler table. A new solver is one module
defining a builder decorated with ``@register_solver(SolverSpec(...))`` (its tests beside
it); nothing else needs editing.

This module imports no JAX: configs read the declared config blocks through it
(:func:`declared_config_blocks`), from each solver module's ``CONFIG_FIELDS`` literal, without
importing the solver modules, so that a config loads (and a bad flag fails) in a fraction of a
second.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from ml_collections import config_dict

KINDS = ('SDE', 'ODE', 'adaptive ODE', 'adaptive SDE')

# Where the PDS preconditioner M may go (sampling.precondition='pds'):
#   'sde'       : the prior draw, every step's drift (M M^T) and noise (M z);
#   'corrector' : only a Langevin corrector after each step (sampling.ode_corrector), never the
#                 solver's own step nor x_T (which then stays white);
#   'none'      : nowhere.
PRECONDITIONER_POLICIES = ('sde', 'corrector', 'none')

# How pds.analytic.moments computes the exact population moments of the solver's output
# (Gaussian fields with their exact score):
#   'affine'     : deterministic after the prior draw, so an affine map of x_T per mode;
#   'stepwise'   : fresh noise every step, each step affine in (x, z);
#   'propagated' : the predictor-corrector recursion of mean and variance per mode;
#   'none'       : not covered (adaptive steps are not an affine map): sample it.
MOMENTS_ENGINES = ('affine', 'stepwise', 'propagated', 'none')

GRIDS = ('ladder', 'karras', 'logsnr')

ODE_CORRECTOR_REASON = ('a preconditioner in an ODE drift changes the distribution the flow '
                        'produces')


def one_per_step(sampling) -> tuple[int, int]:
    """NFE(N) = N: one score evaluation per step."""
    return 1, 0


@dataclasses.dataclass(frozen=True)
class SolverSpec:
    """A solver's declaration.

    ``nfe(sampling)`` gives (a, b) with NFE(N) = a N + b score evaluations for N steps under the
    config block ``sampling`` (the loops count the same number at run time; a test holds every
    fixed-step solver to it); adaptive solvers have ``nfe = None`` and are swept over the
    ``sampling.adaptive`` field ``tolerance``. ``config_fields`` is the solver's own config
    blocks under ``sampling`` ({block: {field: default}}; a default that is a type, e.g.
    ``float``, declares a placeholder of that type, None until set): its module's
    ``CONFIG_FIELDS`` literal, which configs read without importing the module. Two solvers
    declaring the same field must agree on its default.
    """

    name: str  # its sampling.method
    kind: str  # one of KINDS
    preconditioner: str  # one of PRECONDITIONER_POLICIES
    preconditioner_reason: str  # why M may go there and no further
    noise: str  # the noise slots each step draws (Context.noise(interval, slot))
    moments: str  # one of MOMENTS_ENGINES
    grid: str  # the time grid it is meant for (the bench's choice for it)
    reference: str  # paper (arXiv id) and official code
    nfe: Callable[[Any], tuple[int, int]] | None = one_per_step
    nfe_text: str = 'N'  # NFE(N) as the README's table writes it
    where_text: str = ''  # the table's "where M may go", when the policy's words are too short
    tolerance: str = ''  # adaptive: the sampling.adaptive field the bench sweeps
    deviations: tuple[str, ...] = ()  # where the default departs from the official code
    config_fields: Mapping[str, Mapping[str, Any]] | None = None
    bench_pds: tuple[str, ...] = ()  # extra bench presets: 'pds' (alpha), 'pds_tuned' (table)
    # x_T in the bench: 'ode_prior' (bench.ode_prior, no M: the offset a deterministic flow
    # carries from a zero-mean prior removed) or 'score_sde' (the config's own prior)
    bench_prior: str = 'ode_prior'

    def __post_init__(self):
        for field, value, allowed in (('kind', self.kind, KINDS),
                                      ('preconditioner', self.preconditioner,
                                       PRECONDITIONER_POLICIES),
                                      ('moments', self.moments, MOMENTS_ENGINES),
                                      ('grid', self.grid, GRIDS),
                                      ('bench_prior', self.bench_prior,
                                       ('ode_prior', 'score_sde'))):
            if value not in allowed:
                raise ValueError(f'SolverSpec {self.name!r}: {field}={value!r} not one of '
                                 f'{allowed}')
        if (self.nfe is None) != self.adaptive:
            raise ValueError(f'SolverSpec {self.name!r}: nfe is None exactly for adaptive kinds')
        if self.adaptive != bool(self.tolerance):
            raise ValueError(f'SolverSpec {self.name!r}: an adaptive solver names the '
                             'tolerance the bench sweeps, a fixed-step one none')

    @property
    def adaptive(self) -> bool:
        """It chooses its own steps (the while loop; ``max_steps`` and ``done``)."""
        return self.kind.startswith('adaptive')

    @property
    def corrected(self) -> bool:
        """An ODE corrector (``sampling.ode_corrector``) may follow its steps."""
        return self.preconditioner == 'corrector'

    @property
    def ode(self) -> bool:
        """Deterministic flow: the bench starts it from ``bench.ode_prior`` without M."""
        return 'ODE' in self.kind

    def nfe_of(self, sampling, steps: int) -> int:
        """NFE(N) for N = ``steps`` under the config block ``sampling``."""
        a, b = self.nfe(sampling)
        return a * steps + b

    def steps_within(self, sampling, budget: int) -> int:
        """The largest N with NFE(N) <= budget (0 or less when none fits)."""
        a, b = self.nfe(sampling)
        return (budget - b) // a


PLACEHOLDER_TYPES = {'float': float, 'int': int, 'str': str, 'bool': bool}


def _literal(node: ast.AST, where: str) -> Any:
    """The value of a CONFIG_FIELDS literal: dicts, tuples, numbers, strings, True/False/None,
    and the names of :data:`PLACEHOLDER_TYPES` (a placeholder of that type)."""
    if isinstance(node, ast.Name) and node.id in PLACEHOLDER_TYPES:
        return PLACEHOLDER_TYPES[node.id]
    if isinstance(node, ast.Dict):
        return {_literal(k, where): _literal(v, where)
                for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.Tuple):
        return tuple(_literal(v, where) for v in node.elts)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f'{where}: CONFIG_FIELDS must be a literal (numbers, strings, '
                         f'tuples, dicts, types as placeholders), not {ast.dump(node)}') from None


def module_config_fields(path: str) -> dict[str, dict[str, Any]]:
    """The ``CONFIG_FIELDS`` literal assigned at the top level of the module at ``path``
    ({} when it has none), read from its source without importing it."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 \
            else getattr(node, 'target', None)
        if isinstance(target, ast.Name) and target.id == 'CONFIG_FIELDS' and node.value:
            return _literal(node.value, path)
    return {}


def merge_config_blocks(named: Mapping[str, Mapping[str, Mapping[str, Any]]]
                        ) -> dict[str, dict[str, Any]]:
    """{block: {field: default}} merged over ``named`` ({owner: blocks}); ValueError naming
    both owners when two declare one field with different defaults."""
    blocks: dict[str, dict[str, Any]] = {}
    owner: dict[tuple[str, str], str] = {}
    for name, declared in named.items():
        for block, fields in declared.items():
            merged = blocks.setdefault(block, {})
            for field, default in fields.items():
                if field in merged and not (type(merged[field]) is type(default)
                                            and merged[field] == default):
                    raise ValueError(f'sampling.{block}.{field}: {name} declares {default!r}, '
                                     f'{owner[block, field]} {merged[field]!r}')
                merged.setdefault(field, default)
                owner.setdefault((block, field), name)
    return blocks


def declared_config_blocks() -> dict[str, dict[str, Any]]:
    """The solvers' config blocks under ``sampling``, merged over the ``CONFIG_FIELDS`` of
    every module of :mod:`pds.sampling` (read from source: no JAX), in file-name order."""
    folder = os.path.dirname(os.path.abspath(__file__))
    named = {name: module_config_fields(os.path.join(folder, name))
             for name in sorted(os.listdir(folder)) if name.endswith('.py')}
    return merge_config_blocks(named)


def config_value(default: Any) -> Any:
    """A declared default as a config value: a type becomes a placeholder of that type."""
    return config_dict.placeholder(default) if isinstance(default, type) else default
