"""Run mmdet's own command-line tools with this package's runner.

The tools that mmdet ships (``mmdet/.mim/tools/{train,test}.py`` in its wheel, or
``tools/`` of a source checkout) are loaded as modules and their ``Runner`` name is
rebound to a subclass, so every option of mmdet's CLI keeps working unchanged
(:func:`run_mmdet_tool`; ``python -m mmdet_eakd.train`` and
``python -m mmdet_eakd.test``). The config argument may also be a scope name
(``mmdet_eakd::configs/...``, see :mod:`mmdet_eakd.scope`).

A config that sets ``runner_type`` makes mmdet's tools build that runner from
the registry instead of ``Runner``. :func:`bind_runner` routes that path too:
a subclass of this package's runner is built as asked, a base class of it
(e.g. ``'Runner'``) is replaced by this package's runner, and anything else
(e.g. mmengine's ``FlexibleRunner``) is refused with an error, since it would
silently lose the fixes of this package's runner.
"""
import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, List, Union

from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.runner import Runner

from mmdet.registry import RUNNERS
from ..downloads import CheckpointDownloadError
from ..scope import config_path
from .runner import end_distributed_run


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


def tool_runner_class(requested: type, required: type) -> type:
    """The runner class a tool builds when the config sets ``runner_type``.

    Args:
        requested (type): The class ``runner_type`` names.
        required (type): This package's runner for the tool.

    Returns:
        type: ``requested`` if it derives from ``required`` (it keeps the
        fixes), ``required`` if ``requested`` is one of its bases (``required``
        is such a runner, with the fixes).
    """
    if issubclass(requested, required):
        return requested
    if issubclass(required, requested):
        return required
    raise TypeError(
        f'The config sets runner_type to {requested.__module__}.'
        f'{requested.__qualname__}, which is not a {required.__name__}. This '
        f'tool runs {required.__name__} (CPU distributed training with gloo, '
        'checkpoints that plain torch.load reads); another runner would '
        'silently drop those fixes. Remove runner_type from the config, pass '
        f'--cfg-options runner_type={required.__name__}, or derive your runner '
        f'from mmdet_eakd.engine.{required.__name__}.')


def requested_runner_class(cfg: Config) -> type:
    """Resolve ``cfg.runner_type`` (a registered name or a class) as mmengine
    does in ``build_runner_from_cfg``."""
    runner_type: Union[str, type] = cfg.get('runner_type', 'Runner')
    if isinstance(runner_type, type):
        return runner_type
    with RUNNERS.switch_scope_and_registry(cfg.get('_scope_')) as registry:
        runner_cls = registry.get(runner_type)
    if runner_cls is None:
        raise KeyError(f'runner_type {runner_type!r} is not a registered '
                       'runner; import the module that registers it with '
                       'custom_imports.')
    return runner_cls


class RunnerGate:
    """Stands in for the ``RUNNERS`` registry in mmdet's tools.

    mmdet's tools call ``RUNNERS.build(cfg)`` when the config sets
    ``runner_type``; this builds :func:`tool_runner_class` of it instead.

    Args:
        required (type): This package's runner for the tool.
    """

    def __init__(self, required: type) -> None:
        self.required = required

    def build(self, cfg: Config) -> Runner:
        """Build the runner of ``cfg`` (see :func:`tool_runner_class`)."""
        requested = requested_runner_class(cfg)
        runner_cls = tool_runner_class(requested, self.required)
        if runner_cls is requested:
            return RUNNERS.build(cfg)
        print_log(
            f'runner_type {requested.__name__}: running '
            f'{runner_cls.__name__}, which is a {requested.__name__} with '
            'the fixes of mmdet_eakd.', logger='current')
        return runner_cls.from_cfg(cfg)


def bind_runner(tool: ModuleType, runner_cls: type) -> None:
    """Make mmdet's ``tool`` build ``runner_cls`` whatever the config says.

    Args:
        tool (ModuleType): From :func:`load_mmdet_tool`.
        runner_cls (type): This package's runner for the tool.
    """
    tool.Runner = runner_cls
    tool.RUNNERS = RunnerGate(runner_cls)


def resolve_config_names(
    parse_args: Callable[[], argparse.Namespace]
) -> Callable[[], argparse.Namespace]:
    """``parse_args`` of a tool, with its ``config`` given by scope name too.

    Args:
        parse_args (callable): The tool's own ``parse_args``.

    Returns:
        callable: It, with ``args.config`` replaced by
        :func:`mmdet_eakd.scope.config_path` of it; a name that names no
        config ends the process with the reason.
    """

    def parse() -> argparse.Namespace:
        args = parse_args()
        try:
            args.config = config_path(args.config)
        except (FileNotFoundError, ValueError) as error:
            sys.exit(f'error: {error}')
        return args

    return parse


def run_mmdet_tool(name: str, runner_cls: type) -> None:
    """Run mmdet's ``tools/<name>.py`` (its command line: ``sys.argv``) with
    ``runner_cls``, a config named by path or by scope.

    A checkpoint URL that cannot be fetched ends the process with one message
    (:class:`CheckpointDownloadError`), and a distributed run tears its process
    group down on every rank together before it exits
    (:func:`end_distributed_run`).

    Args:
        name (str): ``'train'`` or ``'test'``.
        runner_cls (type): This package's runner for the tool.
    """
    tool = load_mmdet_tool(name)
    bind_runner(tool, runner_cls)
    tool.parse_args = resolve_config_names(tool.parse_args)
    try:
        tool.main()
    except CheckpointDownloadError as error:
        sys.exit(f'error: {error}')
    end_distributed_run()
