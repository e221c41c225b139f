"""The README's sampler table, written from the solvers' declarations.

    python -m pds.sampling.table                  prints it
    python -m pds.sampling.table README.md        rewrites README.md's copy (between the
                                                  sampler-table markers) in place

(tests/test_readme_sampler_table.py holds the README's copy to it.)
"""

from __future__ import annotations

import sys

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


def rewrite(path: str) -> None:
    """Replace the table between the markers of the Markdown file ``path``."""
    with open(path) as f:
        text = f.read()
    if text.count(START) != 1 or text.count(END) != 1:
        raise SystemExit(f'error: {path} needs one {START} and one {END} line')
    head, tail = text[:text.index(START)], text[text.index(END) + len(END):]
    with open(path, 'w') as f:
        f.write(head + markdown_table() + tail)


if __name__ == '__main__':
    if len(sys.argv) > 1:
        rewrite(sys.argv[1])
    else:
        print(markdown_table())
