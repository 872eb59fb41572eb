"""Building, loading and feeding the frozen teacher of a distillation run."""
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.runner import CheckpointLoader
from torch import Tensor

from mmdet.models.detectors import TwoStageDetector
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from ..engine.downloads import CheckpointDownloadError, download_error


def load_teacher_config(config: Union[str, dict, Config]) -> Config:
    """Load the teacher's full mmdet config.

    Args:
        config (str | dict | Config): A config file path, an ``mmdet::`` name
            (e.g. ``'mmdet::faster_rcnn/faster-rcnn_r101_fpn_ms-3x_coco.py'``),
            or a config (dict) that holds a ``model`` entry.

    Returns:
        Config: The loaded config.
    """
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


def check_roi_head(detector: torch.nn.Module, role: str) -> None:
    """Check that a detector has the RoI head the distiller supports.

    The distiller needs a :class:`TwoStageDetector` whose RoI head is a
    :class:`StandardRoIHead` with a box branch whose classifier gives softmax
    logits over ``num_classes + 1`` classes (background last).

    Args:
        detector (nn.Module): The student or the teacher.
        role (str): ``'student'`` or ``'teacher'``, for the error message.
    """
    if not isinstance(detector, TwoStageDetector):
        raise TypeError(
            f'The {role} is a {type(detector).__name__}; RoI distillation '
            'needs a TwoStageDetector (e.g. FasterRCNN, MaskRCNN).')
    roi_head = getattr(detector, 'roi_head', None)
    if not isinstance(roi_head, StandardRoIHead) or not roi_head.with_bbox:
        raise TypeError(
            f'The {role}\'s RoI head is {type(roi_head).__name__}; RoI '
            'distillation supports StandardRoIHead (and subclasses) with a box '
            'head. Cascade-style heads run several box heads per RoI and are '
            'not supported.')
    bbox_head = roi_head.bbox_head
    if bbox_head.custom_cls_channels or getattr(bbox_head.loss_cls,
                                                'use_sigmoid', False):
        raise TypeError(
            f'The {role}\'s box head classifies with sigmoid / custom channels '
            f'({type(bbox_head.loss_cls).__name__}); the KD terms need softmax '
            'logits over num_classes + 1 classes.')


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
                  num_classes: int) -> TwoStageDetector:
    """Build the frozen teacher: strict checkpoint, eval mode, no gradient.

    Args:
        config (str | dict | Config): See :func:`load_teacher_config`.
        checkpoint (str): Path or URL of the teacher's trained weights. ``None``
            is refused: a randomly initialised teacher is never what is meant.

    Returns:
        TwoStageDetector: The teacher, on the CPU.
    """
    if not checkpoint:
        raise ValueError(
            'model.teacher.checkpoint is not set; the teacher needs its trained '
            'weights (a local .pth file or a URL).')
    model_cfg = load_teacher_config(config).model.copy()
    # No train_cfg: the teacher builds no assigner / sampler and never samples.
    model_cfg['train_cfg'] = None
    teacher = MODELS.build(model_cfg)
    check_roi_head(teacher, 'teacher')
    teacher_classes = teacher.roi_head.bbox_head.num_classes
    if teacher_classes != num_classes:
        raise ValueError(
            f'The teacher classifies {teacher_classes} classes but the '
            f'student {num_classes}; KD on RoI logits needs the same '
            'classes. Use a teacher trained on the student\'s data set.')
    load_teacher_checkpoint(teacher, checkpoint)
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher


def renormalize_for_teacher(batch_inputs: Tensor, batch_data_samples: SampleList,
                            student_preprocessor: torch.nn.Module,
                            teacher_preprocessor: torch.nn.Module) -> Tensor:
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
        student_preprocessor (nn.Module): The student's ``DetDataPreprocessor``.
        teacher_preprocessor (nn.Module): The teacher's ``DetDataPreprocessor``.

    Returns:
        Tensor: Teacher inputs, shape (B, 3, H', W') with H' >= H, W' >= W.
    """
    mean_s, std_s = _mean_std(student_preprocessor, batch_inputs)
    mean_t, std_t = _mean_std(teacher_preprocessor, batch_inputs)
    images = batch_inputs * std_s + mean_s
    if (student_preprocessor._channel_conversion !=
            teacher_preprocessor._channel_conversion):
        images = images.flip(1)
    converted = (images - mean_t) / std_t

    pad_value = float(teacher_preprocessor.pad_value)
    height, width = converted.shape[-2:]
    valid = torch.zeros((len(batch_data_samples), 1, height, width),
                        dtype=torch.bool, device=converted.device)
    for i, sample in enumerate(batch_data_samples):
        img_h, img_w = sample.img_shape[:2]
        valid[i, :, :img_h, :img_w] = True
    converted = converted.masked_fill(~valid, pad_value)

    divisor = teacher_preprocessor.pad_size_divisor
    pad_h = (divisor - height % divisor) % divisor
    pad_w = (divisor - width % divisor) % divisor
    if pad_h or pad_w:
        converted = torch.nn.functional.pad(
            converted, (0, pad_w, 0, pad_h), value=pad_value)
    return converted


def _mean_std(preprocessor: torch.nn.Module, like: Tensor) -> List[Tensor]:
    if preprocessor._enable_normalize:
        return [preprocessor.mean.to(like), preprocessor.std.to(like)]
    return [like.new_zeros((3, 1, 1)), like.new_ones((3, 1, 1))]


def same_input_format(student_preprocessor: torch.nn.Module,
                      teacher_preprocessor: torch.nn.Module,
                      ) -> bool:
    """Whether the teacher can take the student's batch as it is."""
    s, t = student_preprocessor, teacher_preprocessor
    if (s._enable_normalize != t._enable_normalize
            or s._channel_conversion != t._channel_conversion
            or float(s.pad_value) != float(t.pad_value)
            or s.pad_size_divisor % t.pad_size_divisor != 0):
        return False
    if not s._enable_normalize:
        return True
    return bool(
        torch.equal(s.mean.cpu(), t.mean.cpu())
        and torch.equal(s.std.cpu(), t.std.cpu()))
