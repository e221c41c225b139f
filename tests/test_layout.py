"""The architecture's import rules, read from the source (every import, also inside functions):

- ``models`` (networks) imports nothing from ``pds``, ``evaluation``, ``configs`` or ``tests``;
- ``evaluation`` (pure metrics) imports nothing from ``pds``, ``models`` or ``tests``;
- a ``pds`` subpackage imports only from the subpackages before it in ``PDS_ORDER`` (and
  itself), plus ``models`` and ``evaluation``; nothing imports ``tests`` or ``benchmarks``.
"""

import ast
import os

import pytest

from tests.paths import ROOT

PDS_ORDER = ('runtime', 'storage', 'method', 'sampling', 'analytic', 'data', 'training',
             'modes')


def imports(path: str) -> list[tuple[int, str]]:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out += [(node.lineno, f'{node.module}.{a.name}') for a in node.names]
    return out


def sources(top: str) -> list[str]:
    found = []
    for d, _, files in os.walk(os.path.join(ROOT, top)):
        found += [os.path.join(d, f) for f in files if f.endswith('.py')]
    return sorted(found)


def allowed(module: str, target: str) -> bool:
    root = target.split('.')[0]
    if root in ('tests', 'benchmarks'):
        return False
    if module.startswith('models'):
        return root not in ('pds', 'evaluation', 'configs')
    if module.startswith('evaluation'):
        return root not in ('pds', 'models')
    if root != 'pds' or module.split('.')[1] == '__init__':
        return True
    parts = target.split('.')
    if len(parts) < 2 or parts[1] not in PDS_ORDER:
        return False  # a module directly under pds/ would bypass the layering
    return PDS_ORDER.index(parts[1]) <= PDS_ORDER.index(module.split('.')[1])


@pytest.mark.parametrize('top', ['models', 'evaluation', 'pds'])
def test_imports_follow_the_layering(top):
    bad = []
    for path in sources(top):
        module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
        bad += [f'{module}:{line} imports {target}' for line, target in imports(path)
                if not allowed(module, target)]
    assert not bad, '\n'.join(bad)


def test_every_pds_module_lives_in_a_subpackage_with_a_docstring():
    for path in sources('pds'):
        rel = os.path.relpath(path, os.path.join(ROOT, 'pds')).split(os.sep)
        assert len(rel) == 2 or rel == ['__init__.py'], path
        assert rel[0] in PDS_ORDER or rel == ['__init__.py'], path
        with open(path) as f:
            assert ast.get_docstring(ast.parse(f.read())), f'{path} has no module docstring'


def test_the_rule_catches_a_violation():
    assert not allowed('models.ncsnpp', 'pds.method.sde.VESDE')
    assert not allowed('pds.method.sde', 'pds.sampling.grid.TimeGrid')
    assert not allowed('pds.sampling.sampler', 'tests.paths.ROOT')
    assert allowed('pds.modes.sample', 'pds.sampling.sampler.build_sampler')
