"""Build models from shipped configs offline: random weights, no downloads.

The COCO configs name pretrained backbones (``torchvision://resnet18``,
``open-mmlab://...``) and teacher checkpoints by URL. Tools that only need a
model of the right shape (config checks, benchmarks) use
:func:`build_offline_model`: every ``Pretrained`` init is dropped, the
weights are initialised by mmdet's own ``init_weights`` from a fixed seed, and
a distillation config's teacher is loaded (strictly, through the normal code
path) from a randomly initialised checkpoint written into a work directory.
"""
import contextlib
import copy
import logging
from pathlib import Path
from typing import Any, Dict, Iterator, Union

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger
from torch import nn

ConfigLike = Union[str, Path, Config]


def register_modules() -> None:
    """Register mmdet's and this package's modules (idempotent)."""
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    import mmdet_eakd  # noqa: F401  (registration)


@contextlib.contextmanager
def _quiet_init() -> Iterator[None]:
    """Silence mmengine's per-parameter ``init_weights`` report (INFO)."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _load_config(config: ConfigLike) -> Config:
    """A private copy of ``config`` (a path is read with ``Config.fromfile``)."""
    if isinstance(config, Config):
        return copy.deepcopy(config)
    if isinstance(config, (str, Path)):
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f'Config file {str(path)!r} does not exist.')
        return Config.fromfile(str(path))
    raise TypeError('config must be a config path or an mmengine Config, got '
                    f'{type(config).__name__}.')


def strip_pretrained_init(cfg: Any) -> Any:
    """Remove every ``Pretrained`` initialisation from a (model) config.

    ``init_cfg=dict(type='Pretrained', ...)`` entries (also inside a list of
    init configs) become ``None`` (or are dropped from the list), and
    ``pretrained=...`` arguments become ``None``, so ``init_weights`` falls
    back to the modules' default random initialisation and downloads nothing.

    Args:
        cfg (Any): A config dict, list or value; not modified.

    Returns:
        Any: A stripped deep copy (dicts become ``ConfigDict``, which mmdet's
        detectors need for attribute access such as ``test_cfg.rpn``).
    """

    def is_pretrained(init: Any) -> bool:
        return isinstance(init, dict) and init.get('type') == 'Pretrained'

    if isinstance(cfg, dict):
        stripped = ConfigDict()
        for key, value in cfg.items():
            if key == 'init_cfg':
                if is_pretrained(value):
                    value = None
                elif isinstance(value, (list, tuple)):
                    value = [v for v in value if not is_pretrained(v)] or None
            elif key == 'pretrained':
                value = None
            stripped[key] = strip_pretrained_init(value)
        return stripped
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(strip_pretrained_init(value) for value in cfg)
    return copy.deepcopy(cfg)


def pretrained_checkpoints(cfg: Any, key: str = '') -> Dict[str, str]:
    """Every checkpoint a config makes its model read at start.

    The ``checkpoint`` of each ``Pretrained`` init (also inside a list of
    init configs), every ``pretrained=`` string, the distillation teacher's
    ``checkpoint`` and the top-level ``load_from``: what
    :func:`strip_pretrained_init` and :func:`offline_config` replace.

    Args:
        cfg (Any): A config (or a part of one); not modified.
        key (str): The dotted key of ``cfg`` in its config (for the result).

    Returns:
        dict[str, str]: Dotted config key -> path or URL, e.g.
        ``{'model.backbone.init_cfg.checkpoint': 'torchvision://resnet18'}``.
    """
    found: Dict[str, str] = {}
    prefix = f'{key}.' if key else ''
    if isinstance(cfg, dict):
        if cfg.get('type') == 'Pretrained' and cfg.get('checkpoint'):
            found[f'{prefix}checkpoint'] = cfg['checkpoint']
        for name, value in cfg.items():
            if (name in ('pretrained', 'load_from')
                    or (name == 'checkpoint' and key.endswith('teacher'))):
                if isinstance(value, str):
                    found[f'{prefix}{name}'] = value
            elif isinstance(value, (dict, list, tuple)):
                found.update(pretrained_checkpoints(value, f'{prefix}{name}'))
    elif isinstance(cfg, (list, tuple)):
        for index, value in enumerate(cfg):
            found.update(pretrained_checkpoints(value, f'{prefix}{index}'))
    return found


def teacher_model_config(cfg: Config,
                         with_train_cfg: bool = False) -> ConfigDict:
    """The teacher's model config of a distillation config, offline-ready.

    Args:
        cfg (Config): A distillation config (``model.teacher.config`` set).
        with_train_cfg (bool): Keep the teacher config's ``train_cfg`` (its
            RPN and RoI assigners/samplers), e.g. to run ``teacher.loss``.
            The distiller itself builds the teacher without one. Defaults to
            False.

    Returns:
        ConfigDict: The teacher's model config without ``Pretrained`` inits.
    """
    from mmdet_eakd.distill import is_distill_config, load_teacher_config
    register_modules()
    if not is_distill_config(cfg.model):
        raise ValueError(f'{cfg.filename or "The config"} is not a '
                         f'distillation config (model.type is '
                         f'{cfg.model.get("type")!r}, not a distilling '
                         'detector).')
    model_cfg = load_teacher_config(cfg.model.teacher.config).model
    model_cfg = strip_pretrained_init(model_cfg)
    if not with_train_cfg:
        model_cfg['train_cfg'] = None
    return model_cfg


def write_random_teacher_checkpoint(cfg: Config, path: Union[str, Path],
                                    seed: int = 0) -> Path:
    """Write a randomly initialised teacher of ``cfg`` as a checkpoint.

    Args:
        cfg (Config): A distillation config.
        path (str | Path): The ``.pth`` file to write (parents are created).
        seed (int): Seed of the random initialisation. Defaults to 0.

    Returns:
        Path: ``path``.
    """
    from mmdet.registry import MODELS
    register_modules()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    teacher = MODELS.build(teacher_model_config(cfg))
    with _quiet_init():
        teacher.init_weights()
    torch.save({'state_dict': teacher.state_dict(), 'meta': {}}, path)
    return path


def offline_config(config: ConfigLike, work_dir: Union[str, Path],
                   seed: int = 0) -> Config:
    """A copy of ``config`` whose model builds offline.

    ``Pretrained`` inits are stripped from the model; for a distillation
    config a random teacher checkpoint is written to
    ``work_dir/random_teacher.pth`` and set as ``model.teacher.checkpoint``.

    Args:
        config (str | Path | Config): A config path or a loaded config; a
            loaded config is not modified.
        work_dir (str | Path): Directory for the teacher checkpoint.
        seed (int): Seed of the teacher's random weights. Defaults to 0.

    Returns:
        Config: The offline config (its ``model`` can be built directly).
    """
    register_modules()
    cfg = _load_config(config)
    if 'model' not in cfg:
        raise ValueError(f'{cfg.filename or "The config"} has no model.')
    cfg.model = strip_pretrained_init(cfg.model)
    from mmdet_eakd.distill import is_distill_config
    if is_distill_config(cfg.model):
        checkpoint = write_random_teacher_checkpoint(
            cfg, Path(work_dir) / 'random_teacher.pth', seed=seed)
        cfg.model.teacher.checkpoint = str(checkpoint)
    return cfg


def build_offline_model(config: ConfigLike, work_dir: Union[str, Path],
                        seed: int = 0) -> nn.Module:
    """Build the model of a config with random weights and no downloads.

    Works for plain mmdet configs and distillation configs (the teacher is
    loaded strictly from a random checkpoint written into ``work_dir``, see
    :func:`offline_config`). The student is initialised by ``init_weights``
    with every ``Pretrained`` init removed, after ``torch.manual_seed(seed)``.

    Args:
        config (str | Path | Config): A config path or a loaded config; a
            loaded config is not modified.
        work_dir (str | Path): Directory for the teacher checkpoint.
        seed (int): Seed of the random weights. Defaults to 0.

    Returns:
        nn.Module: The model, on the CPU, in training mode.
    """
    from mmdet.registry import MODELS
    cfg = offline_config(config, work_dir, seed=seed)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    with _quiet_init():
        model.init_weights()
    return model
