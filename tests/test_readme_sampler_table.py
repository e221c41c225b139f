"""The README's sampler table (between its sampler-table markers) has one row per registered
``sampling.method``, in the documented columns, with a kind from the documented set."""

from __future__ import annotations

import os
import re

from pds.sampling.solver import solver_names
from tests.paths import ROOT

START, END = '<!-- sampler-table:start -->', '<!-- sampler-table:end -->'
HEADER = ['method', 'kind', "where PDS's M may go", 'NFE for N steps', 'reference']
KINDS = {'SDE', 'ODE', 'adaptive ODE', 'adaptive SDE'}


def table_rows() -> list[list[str]]:
    with open(os.path.join(ROOT, 'README.md')) as f:
        text = f.read()
    assert text.count(START) == 1 and text.count(END) == 1, 'one pair of sampler-table markers'
    body = text[text.index(START) + len(START):text.index(END)].strip().splitlines()
    return [[cell.strip() for cell in line.strip().strip('|').split('|')] for line in body]


def test_sampler_table_matches_the_registry():
    header, rule, *rows = table_rows()
    assert header == HEADER
    assert all(re.fullmatch(r'-{3,}', cell) for cell in rule) and len(rule) == len(HEADER)
    assert all(len(row) == len(HEADER) for row in rows), rows
    methods = [row[0].strip('`') for row in rows]
    assert len(methods) == len(set(methods)), methods
    assert set(methods) == set(solver_names())
    assert {row[1] for row in rows} <= KINDS, [row[1] for row in rows]
