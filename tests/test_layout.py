"""The project's layers, read from its imports: scripts -> tracking / training / evaluation ->
nets / datasets / saverloader -> utils, with no circles (function-level imports included),
no script imported by anything, and the process ended only by the CLI helper (a loader worker
ends itself, when its parent terminates it, only in utils/interrupts.py)."""

import ast
import os

import pytest

from tests.fixtures.scripts import ROOT

# a package may import its own modules and those of lower ranks only
RANKS = {'utils': 0, 'nets': 1, 'datasets': 1, 'saverloader': 1, 'tracking': 2, 'training': 3, 'evaluation': 3}
SCRIPT_RANK = 4  # the scripts at the top, benchmarks/, hubconf.py and app.py
LIBRARY = sorted(RANKS)
EXIT_CALLS = {'sys.exit', 'exit', 'quit', 'os._exit'}
EXIT_OWNER = 'utils/cli.py'
HELPER_EXIT = ('utils/interrupts.py', 'os._exit')  # a helper process ending at its parent's SIGTERM


def python_files():
    """Repository-relative paths of the project's Python files (tests and their data aside)."""
    paths = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith('.') and d not in ('tests', '__pycache__')]
        paths += [os.path.relpath(os.path.join(folder, f), ROOT) for f in files if f.endswith('.py')]
    return sorted(paths)


def module_name(path):
    parts = path[:-3].split(os.sep)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imported_modules(path):
    """Every module ``path`` imports, at any depth (functions included), as dotted names."""
    with open(os.path.join(ROOT, path)) as f:
        tree = ast.parse(f.read(), path)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names += [node.module] + [f'{node.module}.{alias.name}' for alias in node.names]
    return names


SCRIPTS = {module_name(p) for p in python_files() if os.sep not in p}


def project_imports(path):
    """The project's modules (library modules or scripts) that ``path`` imports."""
    modules = {module_name(p) for p in python_files()}
    return {name for name in imported_modules(path) if name in modules}


def rank_of(module):
    top = module.split('.')[0]
    return RANKS.get(top, SCRIPT_RANK)


@pytest.mark.parametrize('path', [p for p in python_files()])
def test_imports_flow_down_the_layers(path):
    me = module_name(path)
    for name in project_imports(path):
        same_package = name.split('.')[0] == me.split('.')[0] and me.split('.')[0] in RANKS
        assert same_package or rank_of(name) < rank_of(me), f'{path} imports {name}'
        assert name not in SCRIPTS or name in RANKS, f'{path} imports the script {name}'


def test_no_test_imports_a_script_or_another_test():
    for folder, _, files in os.walk(os.path.join(ROOT, 'tests')):
        for name in files:
            if name.endswith('.py'):
                path = os.path.relpath(os.path.join(folder, name), ROOT)
                for module in imported_modules(path):
                    top = module.split('.')[0]
                    assert top in RANKS or top not in SCRIPTS, f'{path} imports the script {module}'
                    assert not module.split('.')[-1].startswith('test_'), f'{path} imports the test {module}'


def test_no_circles_between_modules():
    graph = {module_name(p): {n for n in project_imports(p) if n != module_name(p)} for p in python_files()}
    graph = {m: {n for n in targets if n in graph} for m, targets in graph.items()}
    state = {}

    def visit(module, trail):
        state[module] = 'open'
        for target in graph[module]:
            assert state.get(target) != 'open', 'import circle: ' + ' -> '.join(trail + [module, target])
            if target not in state:
                visit(target, trail + [module])
        state[module] = 'done'

    for module in graph:
        if module not in state:
            visit(module, [])


def test_only_the_cli_helper_ends_the_process():
    for path in python_files():
        if path == EXIT_OWNER:
            continue
        with open(os.path.join(ROOT, path)) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                called = ast.unparse(node.func)
                allowed = (path, called) == HELPER_EXIT
                assert called not in EXIT_CALLS or allowed, f'{path}:{node.lineno} calls {called}'
            if isinstance(node, ast.Raise) and node.exc is not None:
                assert 'SystemExit' not in ast.unparse(node.exc), f'{path}:{node.lineno} raises SystemExit'


def test_utils_is_a_leaf():
    for path in python_files():
        if path.startswith('utils' + os.sep):
            assert {n.split('.')[0] for n in project_imports(path)} <= {'utils'}, path
