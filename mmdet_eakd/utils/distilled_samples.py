"""The samples training steps distill, collected through the public API."""
import argparse
import os.path as osp
import sys
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.utils import set_random_seed
from mmengine.utils import ProgressBar
from torch import Tensor, nn

from mmdet.models.detectors import TwoStageDetector
from mmdet.registry import MODELS
from ..distill import registered_class, student_model_config
from ..models import RoIDistillTwoStageDetector


class DistilledSamples(NamedTuple):
    """Concatenated logit pairs of the distilled (``valid``) samples.

    Attributes:
        student (Tensor): Shape (N, C).
        teacher (Tensor): Shape (N, C).
        labels (Tensor): Shape (N,), long.
        batches (int): Training batches they came from.
        images (int): Images in those batches.
    """
    student: Tensor
    teacher: Tensor
    labels: Tensor
    batches: int
    images: int


@torch.no_grad()
def collect_distilled_samples(model: nn.Module,
                              data_loader,
                              num_batches: int,
                              student: Optional[nn.Module] = None,
                              max_samples: Optional[int] = None,
                              progress: bool = False) -> DistilledSamples:
    """Run ``model.distill_inputs`` on training batches (no update).

    Args:
        model (nn.Module): A distilling detector (e.g. in eval mode, so that
            BatchNorm uses its running statistics).
        data_loader (Iterable): Yields mmdet training batches.
        num_batches (int): How many batches (fewer if the loader ends).
        student (nn.Module, optional): A detector of the student's head
            family that classifies the sampled samples in place of
            ``model``'s own student (through ``model.adapter.logits``).
        max_samples (int, optional): Stop once this many samples are
            collected, and keep that many.
        progress (bool): Show a progress bar on stdout.

    Returns:
        DistilledSamples: The selected samples of every group.

    Raises:
        ValueError: When the batches gave no sample to distill.
    """
    parts: Dict[str, List[Tensor]] = dict(student=[], teacher=[], labels=[])
    batches = images = count = 0
    bar = (ProgressBar(min(num_batches, len(data_loader)), file=sys.stdout)
           if progress else None)
    for data in data_loader:
        data = model.data_preprocessor(data, True)
        inputs = model.distill_inputs(data['inputs'], data['data_samples'])
        feats = (student.extract_feat(data['inputs'])
                 if student is not None else None)
        for group in inputs.groups:
            logits = group.student if student is None else (
                model.adapter.logits(student, feats, group.samples))
            parts['student'].append(logits[group.valid].float())
            parts['teacher'].append(group.teacher[group.valid].float())
            parts['labels'].append(group.labels[group.valid])
            count += int(group.valid.sum())
        batches += 1
        images += len(data['data_samples'])
        if bar is not None:
            bar.update()
        if batches >= num_batches or (max_samples and count >= max_samples):
            break
    if bar is not None:
        sys.stdout.write('\n')
    if count == 0:
        raise ValueError(
            f'No samples to distill in {batches} batch(es): check that the '
            'data has annotated images and the model config samples RoIs.')
    keep = slice(0, max_samples)
    return DistilledSamples(
        *(torch.cat(v)[keep] for v in parts.values()), batches, images)


def require_file(path: str, what: str) -> None:
    """Raise FileNotFoundError, naming ``what``, unless ``path`` is a file.

    URLs (``scheme://...``) and scoped config names (``mmdet::...``) are
    not checked.
    """
    if '://' not in path and '::' not in path and not osp.isfile(path):
        raise FileNotFoundError(f'{what} {path!r} does not exist.')


def load_strict(model: nn.Module, checkpoint: str, what: str) -> None:
    """Load ``checkpoint`` strictly into ``model``.

    Raises:
        FileNotFoundError: Naming ``what`` when the file does not exist.
        ValueError: Naming ``what`` and the keys when it does not fit.
    """
    require_file(checkpoint, what.capitalize())
    try:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                        logger='silent')
    except RuntimeError as error:
        raise ValueError(f'The {what} {checkpoint!r} does not fit the model '
                         f'config: {error}') from error


def build_roi_probe(model_cfg: dict, teacher_config: str,
                    teacher_checkpoint: str,
                    student_checkpoint: Optional[str] = None,
                    teacher_samples: bool = False
                    ) -> Tuple[nn.Module, Optional[nn.Module]]:
    """A RoI distiller whose training steps sample the RoIs to analyse.

    Args:
        model_cfg (dict): A two-stage model config (plain or distilling) with
            a ``train_cfg`` (its RPN proposals and RoI sampler).
        teacher_config (str): The teacher's config (path or scoped name).
        teacher_checkpoint (str): The teacher's weights.
        student_checkpoint (str, optional): The student's weights; without
            them the student keeps a random initialisation.
        teacher_samples (bool): Let the teacher's own RPN and sampler choose
            the RoIs (the probe's student gets the teacher's weights, so
            ``model_cfg`` must be the teacher's) and classify them with a
            separate, randomly initialised student of ``model_cfg``'s
            architecture.

    Returns:
        tuple[nn.Module, nn.Module | None]: The probe (a
        ``RoIDistillTwoStageDetector`` in eval mode, plain KD) and the
        separate student (eval mode) for ``teacher_samples``, else None.

    Raises:
        ValueError: For a model that is no two-stage detector (naming the
            tool for dense ones), one without ``train_cfg``, or a checkpoint
            that does not fit.
        FileNotFoundError: For a missing checkpoint.
    """
    plain_cfg = student_model_config(model_cfg)
    kind = plain_cfg.get('type')
    cls = registered_class(kind)
    if not (isinstance(cls, type) and issubclass(cls, TwoStageDetector)):
        raise ValueError(
            f'The model is a {kind}; this analysis reads the RoIs of '
            'two-stage detectors. For a dense (one-stage) detector, use '
            'tools/sweep_entropy_temperature.py with its KD / EA-KD config.')
    if not plain_cfg.get('train_cfg'):
        raise ValueError(
            'The model config has no train_cfg: RoI sampling needs its '
            'rpn_proposal and rcnn assigner/sampler settings.')
    require_file(teacher_checkpoint, 'Teacher checkpoint')
    probe = MODELS.build(
        dict(plain_cfg, type=RoIDistillTwoStageDetector,
             teacher=dict(config=teacher_config,
                          checkpoint=teacher_checkpoint),
             distill_loss=dict(type='EAKDLoss', weight_mode='none')))
    separate = None
    if teacher_samples:
        load_strict(probe, teacher_checkpoint, 'teacher checkpoint')
        separate = MODELS.build(plain_cfg)
        separate.init_weights()
        separate.eval()
    elif student_checkpoint:
        load_strict(probe, student_checkpoint, 'student checkpoint')
    else:
        probe.init_weights()
    return probe.eval(), separate


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
    if cfg.model.get('distill_loss') is None:
        raise ValueError(
            'the config distils named distill_terms; the sweep reads the KD '
            'temperature of one classification distill_loss. Give a KD / '
            'EA-KD config with distill_loss.')
    model = build_distiller_probe(cfg, teacher_checkpoint,
                                  student_checkpoint, seed)
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
                classifier=classifier.name, weight_mode=weight_mode)


def add_probe_arguments(parser: argparse.ArgumentParser,
                        config_help: str) -> None:
    """The arguments of the tools that probe a distillation config on
    training batches (:func:`build_distiller_probe`): ``config``,
    ``--teacher-checkpoint``, ``--student-checkpoint``, ``--num-batches``,
    ``--seed``; check them with :func:`check_probe_arguments`."""
    parser.add_argument('config', help=config_help)
    parser.add_argument('--teacher-checkpoint', required=True)
    parser.add_argument('--student-checkpoint', default=None,
                        help='trained student weights (default: the '
                        "config's random initialisation, seed --seed)")
    parser.add_argument('--num-batches', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)


def check_probe_arguments(parser: argparse.ArgumentParser,
                          args: argparse.Namespace) -> None:
    """Usage errors (``parser.error``) for the arguments of
    :func:`add_probe_arguments`: a batch count below 1, a missing file."""
    if args.num_batches < 1:
        parser.error('--num-batches must be >= 1')
    for path, what in ((args.config, 'config'),
                       (args.teacher_checkpoint, '--teacher-checkpoint'),
                       (args.student_checkpoint, '--student-checkpoint')):
        if path is not None and not osp.isfile(path):
            parser.error(f'{what} {path} does not exist')


def build_distiller_probe(cfg: Config, teacher_checkpoint: str,
                          student_checkpoint: Optional[str],
                          seed: int = 0) -> nn.Module:
    """The distiller of a distillation config, in eval mode, to analyse the
    samples its training steps distil (no parameter update).

    Args:
        cfg (Config): A distillation config.
        teacher_checkpoint (str): The teacher's weights.
        student_checkpoint (str, optional): The student's (strictly loaded);
            None keeps the random initialisation of ``seed``.
        seed (int): Random seed of the initialisation.

    Returns:
        nn.Module: The distiller.

    Raises:
        ValueError: For a config that builds no distilling detector.
    """
    from mmdet_eakd.distill import is_distill_config
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    if not is_distill_config(cfg.model):
        raise ValueError('the config does not build a distilling detector '
                         '(model.type); give a distillation config.')
    set_random_seed(seed)
    cfg.model.teacher.checkpoint = teacher_checkpoint
    model = MODELS.build(cfg.model)
    if student_checkpoint:
        load_strict(model, student_checkpoint, 'student checkpoint')
    else:
        model.init_weights()
    return model.eval()


class BoxSamples(NamedTuple):
    """Per positive location of a GFL student's box term, concatenated.

    Attributes:
        ea_weight (Tensor): The EA weight of EA-LD, shape (N,).
        ld (Tensor): The term's loss there without EA: LD times LD's own
            weight, the student's top class score, shape (N,).
        iou (Tensor): IoU of the student's box with its object, shape (N,).
        entropy_t (Tensor): The teacher's mean edge entropy, shape (N,).
        batches (int): Training batches they came from.
    """
    ea_weight: Tensor
    ld: Tensor
    iou: Tensor
    entropy_t: Tensor
    batches: int


@torch.no_grad()
def collect_box_samples(model: nn.Module, data_loader,
                        num_batches: int) -> BoxSamples:
    """The positives a dense distiller's box-distribution term distils, with
    the EA weights and LD terms it would give them and the IoU of the
    student's boxes, over training batches (no update).

    The term's ``reg_max``, ``temperature`` and ``entropy_temperature`` are
    used, with ``weight_mode='ea'`` whatever the term's mode (a KD + LD
    config shows where EA-LD would put the weight).

    Args:
        model (nn.Module): A dense distiller with a box-distribution term
            (``EALDLoss`` in ``distill_terms``), e.g. from
            :func:`build_distiller_probe`.
        data_loader (Iterable): Yields mmdet training batches.
        num_batches (int): How many batches (fewer if the loader ends).

    Returns:
        BoxSamples: The positives of every batch.

    Raises:
        ValueError: Without a box term, for a head whose loss gives no IoU
            (quality) targets, or when the batches had no positive.
    """
    from mmdet_eakd.distill.adapters.dense import positive_locations
    from mmdet_eakd.losses import BOX_DISTRIBUTION
    from mmdet_eakd.losses.ld_functional import (ea_ld_statistics,
                                                 ld_loss_per_location)
    terms = [t for t in model.terms() if t.kind == BOX_DISTRIBUTION]
    if len(terms) != 1:
        raise ValueError(
            f'the config has {len(terms)} box-distribution terms; this '
            'analysis needs one (an EALDLoss in model.distill_terms, e.g. '
            'configs/kd_ld_gfl_r101_r18.py).')
    loss = terms[0].loss
    num_classes = model.adapter.num_classes(model)
    parts: Dict[str, List[Tensor]] = dict(ea_weight=[], ld=[], iou=[],
                                          entropy_t=[])
    batches = 0
    for data in data_loader:
        data = model.data_preprocessor(data, True)
        for group in model.distill_inputs(data['inputs'],
                                          data['data_samples']).groups:
            if group.samples.quality is None:
                raise ValueError(
                    'the student\'s head gives its classification loss no '
                    'IoU (quality) targets; this analysis reads those of '
                    'GFL heads.')
            positive = positive_locations(group, num_classes)
            student, teacher = group.pair(BOX_DISTRIBUTION)
            student = student[positive].float()
            teacher = teacher[positive].float()
            stats = ea_ld_statistics(
                student, teacher, reg_max=loss.reg_max,
                entropy_temperature=loss.entropy_temperature,
                weight_mode='ea')
            score = group.student[positive].float().amax(dim=1).sigmoid()
            parts['ld'].append(score * ld_loss_per_location(
                student, teacher, reg_max=loss.reg_max,
                temperature=loss.temperature))
            parts['ea_weight'].append(stats.ea_weight)
            parts['entropy_t'].append(stats.entropy_t)
            parts['iou'].append(group.samples.quality[positive].float())
        batches += 1
        if batches >= num_batches:
            break
    out = {name: torch.cat(values) for name, values in parts.items()}
    if out['iou'].numel() == 0:
        raise ValueError(f'No positive locations in {batches} batch(es): '
                         'check that the data has annotated images.')
    return BoxSamples(**out, batches=batches)


def box_weights_of_config(cfg: Config, teacher_checkpoint: str,
                          student_checkpoint: Optional[str],
                          num_batches: int, seed: int = 0) -> dict:
    """:func:`~mmdet_eakd.analysis.box_weights.box_weights_by_iou` on the
    positives of a box-distillation config's training steps.

    Args:
        cfg (Config): A config with a box-distribution term (its train
            dataloader gives the data).
        teacher_checkpoint (str): The teacher's weights.
        student_checkpoint (str, optional): The student's; None keeps the
            random initialisation of ``seed``.
        num_batches (int): Training batches to collect.
        seed (int): Random seed (initialisation, data order).

    Returns:
        dict: The summary, with ``batches``.
    """
    from mmdet_eakd.analysis.box_weights import box_weights_by_iou
    model = build_distiller_probe(cfg, teacher_checkpoint,
                                  student_checkpoint, seed)
    samples = collect_box_samples(
        model, Runner.build_dataloader(cfg.train_dataloader, seed=seed),
        num_batches)
    summary = box_weights_by_iou(samples.ea_weight, samples.ld, samples.iou,
                                 samples.entropy_t)
    return dict(summary, batches=samples.batches)
