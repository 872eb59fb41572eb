"""The samples training steps distill, collected through the public API."""
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.utils import set_random_seed
from torch import Tensor

from mmdet.registry import MODELS


class DistilledSamples(NamedTuple):
    """Concatenated logit pairs of the distilled (``valid``) samples.

    Attributes:
        student (Tensor): Shape (N, C).
        teacher (Tensor): Shape (N, C).
        labels (Tensor): Shape (N,), long.
        batches (int): Training batches they came from.
    """
    student: Tensor
    teacher: Tensor
    labels: Tensor
    batches: int


@torch.no_grad()
def collect_distilled_samples(model: torch.nn.Module, data_loader,
                              num_batches: int) -> DistilledSamples:
    """Run ``model.distill_inputs`` on training batches (no update).

    Args:
        model (nn.Module): A distilling detector (e.g. in eval mode, so that
            BatchNorm uses its running statistics).
        data_loader (Iterable): Yields mmdet training batches.
        num_batches (int): How many batches (fewer if the loader ends).

    Returns:
        DistilledSamples: The selected samples of every group.
    """
    parts: Dict[str, List[Tensor]] = dict(student=[], teacher=[], labels=[])
    batches = 0
    for data in data_loader:
        if batches == num_batches:
            break
        data = model.data_preprocessor(data, True)
        inputs = model.distill_inputs(data['inputs'], data['data_samples'])
        for group in inputs.groups:
            parts['student'].append(group.student[group.valid].float())
            parts['teacher'].append(group.teacher[group.valid].float())
            parts['labels'].append(group.labels[group.valid])
        batches += 1
    return DistilledSamples(*(torch.cat(v) for v in parts.values()), batches)


def sweep_config(cfg: Config, teacher_checkpoint: str,
                 student_checkpoint: Optional[str],
                 temperatures: Sequence[float], num_batches: int,
                 seed: int = 0, weight_mode: str = 'ea') -> dict:
    """:func:`~mmdet_eakd.analysis.temperature.temperature_sweep` on the
    samples of a distillation config's training steps.

    Args:
        cfg (Config): A distillation config (its ``distill_loss`` gives the
            KD temperature; its train dataloader the data).
        teacher_checkpoint (str): The teacher's weights.
        student_checkpoint (str, optional): The student's; None keeps the
            random initialisation of ``seed``.
        temperatures (Sequence[float]): The ``T'`` values.
        num_batches (int): Training batches to collect.
        seed (int): Random seed (initialisation, data order).
        weight_mode (str): The EA weight mode swept. Defaults to 'ea'.

    Returns:
        dict: ``rows`` (one per ``T'``), ``samples``, ``positives``,
        ``batches``, ``classifier`` and ``weight_mode``.
    """
    from mmdet_eakd.analysis.temperature import (positive_mask,
                                                 temperature_sweep)
    from mmdet_eakd.distill import is_distill_config
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    if not is_distill_config(cfg.model):
        raise ValueError('the config does not build a distilling detector '
                         '(model.type); give a KD / EA-KD config.')
    if cfg.model.get('distill_loss') is None:
        raise ValueError(
            'the config distils named distill_terms; the sweep reads the KD '
            'temperature of one classification distill_loss. Give a KD / '
            'EA-KD config with distill_loss.')
    set_random_seed(seed)
    cfg.model.teacher.checkpoint = teacher_checkpoint
    model = MODELS.build(cfg.model)
    if student_checkpoint:
        load_checkpoint(model, student_checkpoint, map_location='cpu',
                        strict=True, logger='silent')
    else:
        model.init_weights()
    model.eval()
    samples = collect_distilled_samples(
        model, Runner.build_dataloader(cfg.train_dataloader, seed=seed),
        num_batches)
    classifier = model.adapter.classifier
    rows = temperature_sweep(samples.student, samples.teacher,
                             samples.labels, temperatures, classifier,
                             weight_mode=weight_mode,
                             temperature=model.distill_loss.temperature)
    positives = positive_mask(samples.labels, samples.student.size(1),
                              classifier)
    return dict(rows=rows, samples=len(samples.labels),
                positives=int(positives.sum()), batches=samples.batches,
                classifier=classifier, weight_mode=weight_mode)
