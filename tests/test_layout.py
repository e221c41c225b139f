"""The architecture's import rules, read from the source (every import, also inside functions):

- ``models`` (networks) imports nothing from ``pds``, ``evaluation``, ``configs`` or ``tests``;
- ``evaluation`` (pure metrics) imports nothing from ``pds``, ``models`` or ``tests``;
- a ``pds`` subpackage imports only from the subpackages before it in ``PDS_ORDER`` (and
  itself), plus ``models`` and ``evaluation``; nothing imports ``tests`` or ``benchmarks``;
- ``pds/modes`` holds only modes: no module of ``pds``, ``benchmarks`` or main.py imports a
  mode module, and no mode imports another (they run a mode through the registry,
  ``pds.modes.run_mode``; the tests may import a mode to call it);
- no import cycle except through a plug-in registry (a registry imports its plug-ins so that
  they register, and each plug-in imports the registry).
"""

import ast
import os

import pytest

from tests.helpers.paths import ROOT

PDS_ORDER = ('runtime', 'storage', 'method', 'sampling', 'analytic', 'data', 'training',
             'experiment', 'likelihood', 'quality', 'modes')
# the plug-in registries: a plug-in's import of its registry is the one edge a cycle may use
REGISTRIES = ('pds.sampling.solver', 'pds.method.precondition', 'models.registry')
MODE_MODULES = tuple(sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, 'pds', 'modes'))
                            if f.endswith('.py') and f != '__init__.py'))


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
    if top.endswith('.py'):
        return [os.path.join(ROOT, top)]
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
    assert not allowed('pds.sampling.sampler', 'tests.helpers.paths.ROOT')
    assert allowed('pds.modes.sample', 'pds.sampling.sampler.build_sampler')


def module_name(path: str) -> str:
    return os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.').removesuffix('.__init__')


def mode_imported(target: str) -> str | None:
    """The mode module an import target names (``pds.modes.bench.run``: 'bench'), else None
    (the registry ``pds.modes`` itself: ``pds.modes.run_mode``)."""
    parts = target.split('.')
    if parts[:2] == ['pds', 'modes'] and len(parts) > 2 and parts[2] in MODE_MODULES:
        return parts[2]
    return None


def mode_violations(top: str) -> list[str]:
    bad = []
    for path in sources(top):
        module = module_name(path)
        parts = module.split('.')
        for line, target in imports(path):
            mode = mode_imported(target)
            if mode is not None and parts[:3] != ['pds', 'modes', mode]:
                bad.append(f'{module}:{line} imports the mode module {target}')
    return bad


@pytest.mark.parametrize('top', ['pds', 'benchmarks', 'main.py'])
def test_no_module_imports_a_mode_module(top):
    """The library, the benchmarks and main.py reach a mode through ``pds.modes.run_mode``,
    and no mode imports another: what two modes share lives in the library."""
    assert MODE_MODULES and 'bench' in MODE_MODULES
    bad = mode_violations(top)
    assert not bad, '\n'.join(bad)


def import_graph(tops: tuple[str, ...]) -> dict[str, set[str]]:
    """module -> the modules it imports (anywhere in it), over the packages ``tops``."""
    paths = {module_name(p): p for top in tops for p in sources(top)}

    def resolve(target: str) -> str | None:
        while target and target not in paths:
            target = target.rpartition('.')[0]
        return target or None

    graph = {}
    for module, path in paths.items():
        graph[module] = {m for _, t in imports(path)
                         if (m := resolve(t)) is not None and m != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_outside_the_plugin_registries():
    graph = import_graph(('pds', 'models', 'evaluation', 'benchmarks', 'main.py'))
    assert set(REGISTRIES) <= set(graph)
    # a plug-in importing its registry closes the registry's cycle: the one edge allowed
    kept = {m: {t for t in targets if t not in REGISTRIES} for m, targets in graph.items()}
    assert not cycles(kept), cycles(kept)


def test_the_rules_catch_a_mode_import_and_a_cycle():
    assert mode_imported('pds.modes.bench.run') == 'bench'
    assert mode_imported('pds.modes.run_mode') is None
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
    assert cycles({'a': {'b'}, 'b': set()}) == []


def test_tests_import_through_packages_not_sys_path():
    """pytest puts the checkout on the path (pyproject.toml: pythonpath ['.'], importlib
    mode) and ``tests.helpers.paths.jax_env`` sets PYTHONPATH for subprocesses: no test edits
    ``sys.path``, and the helpers live in the package ``tests.helpers``."""
    bad = []
    for path in sources('tests'):
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        bad += [f'{os.path.relpath(path, ROOT)}:{node.lineno}' for node in ast.walk(tree)
                if isinstance(node, ast.Attribute) and node.attr == 'path'
                and isinstance(node.value, ast.Name) and node.value.id == 'sys']
    assert not bad, 'sys.path used at ' + ', '.join(bad)
    for package in ('tests', os.path.join('tests', 'helpers')):
        assert os.path.isfile(os.path.join(ROOT, package, '__init__.py')), package


def test_pds_modes_holds_only_registered_modes():
    """Every module of pds/modes is a mode main.py can run, and every mode has its module."""
    from pds.modes import MODES

    assert sorted(path.rsplit('.', 1)[1] for path in MODES.values()) == list(MODE_MODULES)
    assert all(path == f'pds.modes.{name}' for name, path in MODES.items())
