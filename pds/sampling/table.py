"""The README's sampler table, written from the solvers' declarations.

    python -m pds.sampling.table        prints it (tests/test_readme_sampler_table.py holds the
                                        README's copy, between its sampler-table markers, to it)
"""

from __future__ import annotations

from pds.sampling.declaration import SolverSpec
from pds.sampling.solver import solver_specs

START, END = '<!-- sampler-table:start -->', '<!-- sampler-table:end -->'
HEADER = ('| method | kind | where PDS\'s M may go | NFE for N steps | reference |\n'
          '|---|---|---|---|---|')
WHERE = {'sde': 'x_T, drift and noise', 'corrector': 'an `ode_corrector` only',
         'none': 'nowhere'}


def row(spec: SolverSpec) -> str:
    cells = (f'`{spec.name}`', spec.kind, spec.where_text or WHERE[spec.preconditioner],
             spec.nfe_text,
             spec.reference)
    return '| ' + ' | '.join(c.replace('|', '\\|') for c in cells) + ' |'


def markdown_table() -> str:
    """The table: one row per registered solver, in registry order, between the markers."""
    return '\n'.join([START, HEADER, *(row(spec) for spec in solver_specs()), END])


if __name__ == '__main__':
    print(markdown_table())
