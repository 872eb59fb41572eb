"""The package's folders import each other one way, and the package never
reaches outside itself (into the checkout's configs/ or tools/)."""
import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

import mmdet_eakd

PACKAGE = Path(mmdet_eakd.__file__).resolve().parent


def imported_units(path: Path) -> Set[str]:
    """The package's folders and top-level modules that ``path`` imports, at
    module level or inside functions."""
    package = list(path.relative_to(PACKAGE).parent.parts)
    units = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name.split('.') for a in node.names]
            units |= {n[1] for n in names if n[0] == 'mmdet_eakd' and n[1:]}
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or '').split('.') if node.module else []
            if node.level == 0:
                if module[0] != 'mmdet_eakd':
                    continue
                base = module[1:]
            else:
                base = package[:len(package) - (node.level - 1)] + module
            if base:
                units.add(base[0])
            else:  # from mmdet_eakd import x, from .. import x
                units |= {a.name for a in node.names}
    return units


def dependency_graph() -> Dict[str, Set[str]]:
    """Folder-level imports, without the package's ``__init__`` (which imports
    every folder to register its modules)."""
    graph: Dict[str, Set[str]] = {}
    for path in PACKAGE.rglob('*.py'):
        relative = path.relative_to(PACKAGE)
        if relative == Path('__init__.py') or '.mim' in relative.parts:
            continue
        unit = Path(relative.parts[0]).stem
        graph.setdefault(unit, set()).update(imported_units(path) - {unit})
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """A cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: Dict[str, str] = {}
    stack: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 'open'
        stack.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == 'open':
                return stack[stack.index(successor):] + [successor]
            if successor not in state:
                cycle = visit(successor)
                if cycle:
                    return cycle
        state[node] = 'done'
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_folders_import_one_way():
    graph = dependency_graph()
    # the loop of issue 20 and the layers that replace it
    assert 'engine' not in graph['distill']
    assert {'distill', 'downloads'} <= graph['engine']
    assert 'downloads' in graph['distill']
    cycle = find_cycle(graph)
    assert cycle is None, 'folder-level import loop: ' + ' -> '.join(cycle)


def test_find_cycle_reports_a_loop():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == [
        'a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': set(), 'c': {'a', 'b'}}) is None


def test_package_never_reaches_outside_itself():
    for path in PACKAGE.rglob('*.py'):
        if '.mim' in path.relative_to(PACKAGE).parts:
            continue
        assert 'parents[' not in path.read_text(), path
