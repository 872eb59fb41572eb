"""Run mmdet's own command-line tools with this package's runner.

The tools that mmdet ships (``mmdet/.mim/tools/{train,test}.py`` in its wheel, or
``tools/`` of a source checkout) are loaded as modules and their ``Runner`` name is
rebound to a subclass, so every option of mmdet's CLI keeps working unchanged.
"""
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import List


def mmdet_tool_candidates(name: str) -> List[Path]:
    """Paths where mmdet's ``tools/<name>.py`` may live, in search order."""
    import mmdet
    root = Path(mmdet.__file__).resolve().parent
    return [
        root / '.mim' / 'tools' / f'{name}.py',
        root.parent / 'tools' / f'{name}.py',
    ]


def load_mmdet_tool(name: str) -> ModuleType:
    """Import mmdet's ``tools/<name>.py`` as a module without running it.

    Args:
        name (str): Tool name, e.g. ``'train'`` or ``'test'``.

    Returns:
        ModuleType: The tool module; call its ``main()`` to run it.
    """
    candidates = mmdet_tool_candidates(name)
    for path in candidates:
        if path.is_file():
            spec = importlib.util.spec_from_file_location(
                f'_mmdet_tools_{name}', path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError(
        f'mmdet\'s tools/{name}.py was not found at any of '
        f'{[str(p) for p in candidates]}. Install mmdet 3.3.0 from its wheel '
        '(pip install mmdet==3.3.0 ships the tools under mmdet/.mim/tools).')
