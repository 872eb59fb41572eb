"""Building, loading and feeding the frozen teacher of a distillation run."""
import os.path as osp
import inspect
from typing import (Any, Callable, Dict, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.runner import CheckpointLoader
from torch import Tensor

from mmdet.registry import MODELS
from mmdet.structures import SampleList
from ..downloads import CheckpointDownloadError, download_error


def registered_class(kind: Any) -> Any:
    """The class a config's ``type`` names: a registered name looked up in
    mmdet's ``MODELS`` (None if unknown), or the given object itself."""
    return MODELS.get(kind) if isinstance(kind, str) else kind


def load_teacher_config(config: Union[str, dict, Config]) -> Config:
    """Load the teacher's full mmdet config.

    Args:
        config (str | dict | Config): A config file path, an ``mmdet::`` name
            (e.g. ``'mmdet::faster_rcnn/faster-rcnn_r101_fpn_ms-3x_coco.py'``),
            or a config (dict) that holds a ``model`` entry.

    Returns:
        Config: The loaded config.
    """
    if isinstance(config, Config):
        return config
    if isinstance(config, str):
        if '::' in config:
            return get_config(config)
        if not osp.isfile(config):
            raise FileNotFoundError(
                f'Teacher config {config!r} does not exist. Set '
                'model.teacher.config to a config file path or an mmdet:: '
                "name such as 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'.")
        return Config.fromfile(config)
    if isinstance(config, dict):
        cfg = config if isinstance(config, Config) else Config(config)
        if 'model' not in cfg:
            raise ValueError(
                'model.teacher.config is a dict without a "model" entry; give '
                'the whole teacher config (with model=dict(...)) or its path.')
        return cfg
    raise TypeError('model.teacher.config must be a path, an mmdet:: name or a '
                    f'config dict, but got {type(config).__name__}.')


def _state_dict_of(checkpoint: Any, source: str) -> Dict[str, Tensor]:
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(
        checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise TypeError(f'Teacher checkpoint {source!r} holds no state dict.')
    if all(key.startswith('module.') for key in state_dict):
        # saved from a DDP-wrapped model
        state_dict = {key[len('module.'):]: v for key, v in state_dict.items()}
    return state_dict


def _key_list(keys: Sequence[str], limit: int = 10) -> str:
    keys = sorted(keys)
    shown = ', '.join(keys[:limit])
    return shown + (f', ... ({len(keys)} in all)' if len(keys) > limit else '')


def load_teacher_checkpoint(teacher: torch.nn.Module, checkpoint: str) -> None:
    """Load a teacher checkpoint strictly.

    Args:
        teacher (nn.Module): The built teacher.
        checkpoint (str): A local path or a URL (``http(s)://``,
            ``open-mmlab://``, ...), read by mmengine's ``CheckpointLoader``.

    Raises:
        CheckpointDownloadError: The URL could not be fetched; the message
            says how to pass a local file or fill torch's hub cache.
    """
    is_local = '://' not in checkpoint
    if is_local and not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'Teacher checkpoint {checkpoint!r} does not exist. Set '
            'model.teacher.checkpoint to the trained teacher\'s .pth file or URL.')
    try:
        raw = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    except CheckpointDownloadError as error:  # e.g. no network
        raise download_error(checkpoint, error.reason,
                             config_key='model.teacher.checkpoint') from error
    state_dict = _state_dict_of(raw, checkpoint)
    expected = teacher.state_dict().keys()
    missing = set(expected) - set(state_dict)
    unexpected = set(state_dict) - set(expected)
    if missing or unexpected:
        raise KeyError(
            f'Teacher checkpoint {checkpoint!r} does not match the teacher '
            f'config ({type(teacher).__name__}). Missing keys: '
            f'{_key_list(missing) or "none"}. Unexpected keys: '
            f'{_key_list(unexpected) or "none"}. Use the checkpoint trained '
            'with model.teacher.config.')
    try:
        teacher.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise RuntimeError(
            f'Teacher checkpoint {checkpoint!r} does not fit the teacher '
            f'config: {error}') from error


def build_teacher(config: Union[str, dict, Config], checkpoint: Optional[str],
                  check: Callable[[torch.nn.Module], None]) -> torch.nn.Module:
    """Build the frozen teacher: strict checkpoint, eval mode, no gradient.

    Args:
        config (str | dict | Config): See :func:`load_teacher_config`.
        checkpoint (str): Path or URL of the teacher's trained weights. ``None``
            is refused: a randomly initialised teacher is never what is meant.
        check (Callable[[nn.Module], None]): Checks the built teacher against
            the student (head family, classes) before its checkpoint is read;
            raises a named error for an unsupported pair.

    Returns:
        nn.Module: The teacher detector, on the CPU.
    """
    if not checkpoint:
        raise ValueError(
            'model.teacher.checkpoint is not set; the teacher needs its trained '
            'weights (a local .pth file or a URL).')
    model_cfg = load_teacher_config(config).model.copy()
    # No train_cfg: the teacher builds no assigner / sampler and never samples.
    model_cfg['train_cfg'] = None
    teacher = MODELS.build(model_cfg)
    check(teacher)
    load_teacher_checkpoint(teacher, checkpoint)
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher


class InputFormat(NamedTuple):
    """How a ``DetDataPreprocessor`` turns images into a batch.

    ``mean``/``std`` are None without normalization; ``flip_channels`` is its
    ``bgr_to_rgb or rgb_to_bgr``.
    """
    mean: Optional[Tuple[float, ...]]
    std: Optional[Tuple[float, ...]]
    flip_channels: bool
    pad_value: float
    pad_size_divisor: int


def input_format(preprocessor_cfg: Optional[dict], role: str) -> InputFormat:
    """The input format of a detector, read from its ``data_preprocessor``.

    The settings are bound to the preprocessor class's signature, so unset
    arguments take mmdet's own defaults.

    Args:
        preprocessor_cfg (dict, optional): The model's ``data_preprocessor``
            config (e.g. ``dict(type='DetDataPreprocessor', mean=..., ...)``).
        role (str): ``'student'`` or ``'teacher'``, for the error message.

    Returns:
        InputFormat: The settings that decide what a batch looks like.
    """
    from mmengine.model import ImgDataPreprocessor
    if not isinstance(preprocessor_cfg, dict) or 'type' not in preprocessor_cfg:
        raise TypeError(
            f'The {role} model config has no data_preprocessor dict (got '
            f'{preprocessor_cfg!r}); distillation compares the student\'s '
            'and the teacher\'s input formats. Set model.data_preprocessor '
            "= dict(type='DetDataPreprocessor', mean=..., std=..., ...).")
    cfg = dict(preprocessor_cfg)
    kind = cfg.pop('type')
    cls = registered_class(kind)
    if not (isinstance(cls, type) and issubclass(cls, ImgDataPreprocessor)):
        raise TypeError(
            f'The {role}\'s data_preprocessor is {kind!r}; distillation '
            'needs an ImgDataPreprocessor such as DetDataPreprocessor.')
    bound = inspect.signature(cls).bind(**cfg)
    bound.apply_defaults()
    args = bound.arguments

    def floats(values: Optional[Sequence[float]]
               ) -> Optional[Tuple[float, ...]]:
        return None if values is None else tuple(float(v) for v in values)

    return InputFormat(
        mean=floats(args['mean']),
        std=floats(args['std']),
        flip_channels=bool(args['bgr_to_rgb'] or args['rgb_to_bgr']),
        pad_value=float(args['pad_value']),
        pad_size_divisor=int(args['pad_size_divisor']))


def same_input_format(student: InputFormat, teacher: InputFormat) -> bool:
    """Whether the teacher can take the student's batch as it is."""
    return (student.mean == teacher.mean and student.std == teacher.std
            and student.flip_channels == teacher.flip_channels
            and student.pad_value == teacher.pad_value
            and student.pad_size_divisor % teacher.pad_size_divisor == 0)


def renormalize_for_teacher(batch_inputs: Tensor, batch_data_samples: SampleList,
                            student: InputFormat,
                            teacher: InputFormat) -> Tensor:
    """Convert a batch normalized by the student for the teacher, exactly.

    ``DetDataPreprocessor`` computes ``(flip(img) - mean) / std`` per image and
    pads the batch with ``pad_value`` afterwards. This undoes the student's
    normalization, applies the teacher's (channel order included), refills the
    padding with the teacher's ``pad_value`` and pads to the teacher's
    ``pad_size_divisor``.

    Args:
        batch_inputs (Tensor): Student inputs, shape (B, 3, H, W).
        batch_data_samples (list[DetDataSample]): Their data samples (for each
            image's unpadded ``img_shape``).
        student (InputFormat): The student's input format.
        teacher (InputFormat): The teacher's input format.

    Returns:
        Tensor: Teacher inputs, shape (B, 3, H', W') with H' >= H, W' >= W.
    """
    mean_s, std_s = _mean_std(student, batch_inputs)
    mean_t, std_t = _mean_std(teacher, batch_inputs)
    images = batch_inputs * std_s + mean_s
    if student.flip_channels != teacher.flip_channels:
        images = images.flip(1)
    converted = (images - mean_t) / std_t

    pad_value = teacher.pad_value
    height, width = converted.shape[-2:]
    valid = torch.zeros((len(batch_data_samples), 1, height, width),
                        dtype=torch.bool, device=converted.device)
    for i, sample in enumerate(batch_data_samples):
        img_h, img_w = sample.img_shape[:2]
        valid[i, :, :img_h, :img_w] = True
    converted = converted.masked_fill(~valid, pad_value)

    divisor = teacher.pad_size_divisor
    pad_h = (divisor - height % divisor) % divisor
    pad_w = (divisor - width % divisor) % divisor
    if pad_h or pad_w:
        converted = torch.nn.functional.pad(
            converted, (0, pad_w, 0, pad_h), value=pad_value)
    return converted


def _mean_std(fmt: InputFormat, like: Tensor) -> Tuple[Tensor, Tensor]:
    """Mean and std of ``fmt`` as (C, 1, 1) tensors like ``like``."""
    if fmt.mean is None:
        return like.new_zeros((1, 1, 1)), like.new_ones((1, 1, 1))
    return (like.new_tensor(fmt.mean).view(-1, 1, 1),
            like.new_tensor(fmt.std).view(-1, 1, 1))
