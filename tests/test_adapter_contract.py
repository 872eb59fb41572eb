"""The contract every head-family adapter keeps, run for every registered one.

With the teacher's weights equal to the student's (and BatchNorm in eval
mode on both, as the teacher always is), every term's teacher tensors equal,
sample by sample, what the student's detection loss used: the class logits
of every group, and the other kinds the terms compare (GFL's box-edge
distributions). The test is parametrised over
``registered_adapters()``: an adapter registered without a variant below
fails until one is added. Variants cover the code paths that differ within a
family (e.g. Mask R-CNN's mask branch, which mmdet runs on the box
branch's features when it shares the box RoI extractor, or through the
extractor again in a head that re-extracts the positive RoIs).
"""
import copy
from typing import Callable, Dict, List, NamedTuple, Tuple

import pytest
import torch
from conftest import SYNTHETIC_CONFIGS
from mmengine.config import Config, ConfigDict
from torch.nn.modules.batchnorm import _BatchNorm

import mmdet_eakd  # noqa: F401
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox2roi
from mmdet.testing import demo_mm_inputs
from mmdet.utils import register_all_modules
from mmdet_eakd.distill.adapters import registered_adapters
from mmdet_eakd.losses import CLASS_LOGITS

register_all_modules()
NUM_CLASSES = 8
KD_SOFTMAX = dict(type='EAKDLoss', weight_mode='ea')
KD_SIGMOID = dict(type='SigmoidEAKDLoss', weight_mode='ea')


@MODELS.register_module(force=True)
class ReextractingMaskRoIHead(StandardRoIHead):
    """A ``StandardRoIHead`` whose mask branch runs the shared box RoI
    extractor a second time, on the positive RoIs only (what mmdet's
    ``mask_loss`` does with a separate mask extractor, here through the box
    one): the capture must keep the RoIs of the box loss."""

    def mask_loss(self, x, sampling_results, bbox_feats, batch_gt_instances):
        pos_rois = bbox2roi([res.pos_priors for res in sampling_results])
        mask_results = self._mask_forward(x, pos_rois)
        mask_results.update(loss_mask=self.mask_head.loss_and_target(
            mask_preds=mask_results['mask_preds'],
            sampling_results=sampling_results,
            batch_gt_instances=batch_gt_instances,
            rcnn_train_cfg=self.train_cfg)['loss_mask'])
        return mask_results


class Variant(NamedTuple):
    """A student of one adapter's family and how it is distilled.

    Attributes:
        name (str): The variant's name (the test id).
        model (Callable[[], ConfigDict]): The plain student model config.
        distiller (str): The registered distilling detector type.
        terms (dict): The distiller's ``distill_terms``.
        with_mask (bool): The batch carries instance masks.
    """
    name: str
    model: Callable[[], ConfigDict]
    distiller: str
    terms: dict
    with_mask: bool = False


def _synthetic(name: str) -> Callable[[], ConfigDict]:
    return lambda: Config.fromfile(str(SYNTHETIC_CONFIGS / name)).model


def _mask_rcnn(roi_head_type: str = 'StandardRoIHead',
               shared_extractor: bool = True) -> Callable[[], ConfigDict]:
    """The tiny Faster R-CNN with a small FCN mask head, on the box RoI
    extractor (``share_roi_extractor``) or on a 14 px one of its own."""

    def build() -> ConfigDict:
        cfg = Config.fromfile(str(SYNTHETIC_CONFIGS /
                                  'frcnn_tiny_synthetic.py')).model
        cfg.type = 'MaskRCNN'
        cfg.roi_head.type = roi_head_type
        cfg.roi_head.mask_head = dict(
            type='FCNMaskHead', num_convs=1, in_channels=32,
            conv_out_channels=16, num_classes=NUM_CLASSES,
            loss_mask=dict(type='CrossEntropyLoss', use_mask=True,
                           loss_weight=1.0))
        if not shared_extractor:
            cfg.roi_head.mask_roi_extractor = dict(
                type='SingleRoIExtractor',
                roi_layer=dict(type='RoIAlign', output_size=14,
                               sampling_ratio=2),
                out_channels=32, featmap_strides=[4, 8, 16, 32])
        # the FCN head doubles its RoI features: 7 px (box extractor) -> 14
        cfg.train_cfg.rcnn.mask_size = 14 if shared_extractor else 28
        return cfg

    return build


def _rtmdet(**head) -> Callable[[], ConfigDict]:
    """The tiny RTMDet (``RTMDetSepBNHead``), head fields updated; another
    head type drops the arguments it does not take."""

    def build() -> ConfigDict:
        cfg = Config.fromfile(str(SYNTHETIC_CONFIGS /
                                  'rtmdet_tiny_synthetic.py')).model
        cfg.bbox_head.update(head)
        own = {'RTMDetHead': ('exp_on_reg', 'share_conv'),
               'RTMDetInsSepBNHead': ('exp_on_reg', )}
        for key in own.get(cfg.bbox_head.type, ()):
            cfg.bbox_head.pop(key)
        if cfg.bbox_head.type == 'RTMDetInsSepBNHead':
            # its mask loss needs the masks padded to the batch, as the
            # batch's images are
            cfg.data_preprocessor.pad_mask = True
        return cfg

    return build


def _fcos() -> ConfigDict:
    cfg = Config.fromfile(str(SYNTHETIC_CONFIGS /
                              'retinanet_tiny_synthetic.py')).model
    cfg.type = 'FCOS'
    cfg.bbox_head = dict(
        type='FCOSHead', num_classes=NUM_CLASSES, in_channels=32,
        stacked_convs=1, feat_channels=32, strides=[4, 8, 16, 32],
        regress_ranges=((-1, 32), (32, 64), (64, 128), (128, 1e8)),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                      alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='IoULoss', loss_weight=1.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True))
    cfg.train_cfg = None
    return cfg


#: Adapter class name -> its variants. A new adapter adds its own here.
VARIANTS: Dict[str, List[Variant]] = {
    'StandardRoIAdapter': [
        Variant('faster_rcnn', _synthetic('frcnn_tiny_synthetic.py'),
                'RoIDistillTwoStageDetector', dict(cls=KD_SOFTMAX)),
        Variant('mask_rcnn_shared_extractor', _mask_rcnn(),
                'RoIDistillTwoStageDetector', dict(cls=KD_SOFTMAX),
                with_mask=True),
        Variant('mask_rcnn_own_mask_extractor',
                _mask_rcnn(shared_extractor=False),
                'RoIDistillTwoStageDetector', dict(cls=KD_SOFTMAX),
                with_mask=True),
        Variant('mask_rcnn_reextracting_shared_extractor',
                _mask_rcnn('ReextractingMaskRoIHead'),
                'RoIDistillTwoStageDetector', dict(cls=KD_SOFTMAX),
                with_mask=True),
    ],
    'CascadeRoIAdapter': [
        Variant('cascade_rcnn', _synthetic('cascade_tiny_synthetic.py'),
                'RoIDistillTwoStageDetector', dict(cls=KD_SOFTMAX)),
    ],
    'DenseHeadAdapter': [
        Variant('retinanet', _synthetic('retinanet_tiny_synthetic.py'),
                'DenseDistillSingleStageDetector', dict(cls=KD_SIGMOID)),
        Variant('gfl_cls_and_box', _synthetic('gfl_tiny_synthetic.py'),
                'DenseDistillSingleStageDetector',
                dict(cls=KD_SIGMOID, box=dict(type='EALDLoss'))),
        Variant('fcos', _fcos, 'DenseDistillSingleStageDetector',
                dict(cls=KD_SIGMOID)),
    ],
    'RTMDetAdapter': [
        Variant('rtmdet_sepbn_shared_convs', _rtmdet(),
                'DenseDistillRTMDet', dict(cls=KD_SIGMOID)),
        Variant('rtmdet_head_with_objectness',
                _rtmdet(type='RTMDetHead', with_objectness=True),
                'DenseDistillRTMDet', dict(cls=KD_SIGMOID)),
        Variant('rtmdet_ins_masks_train_too',
                _rtmdet(type='RTMDetInsSepBNHead', num_prototypes=8,
                        dyconv_channels=8,
                        loss_mask=dict(type='DiceLoss', loss_weight=2.0,
                                       eps=5e-6, reduction='mean')),
                'DenseDistillRTMDet', dict(cls=KD_SIGMOID), with_mask=True),
    ],
}


def _cases() -> List[Tuple[str, str]]:
    """(adapter name, variant name) for every registered adapter; an adapter
    without variants gives one case that fails."""
    names = sorted({type(a).__name__ for a in registered_adapters().values()})
    return [(adapter, variant.name) for adapter in names
            for variant in VARIANTS.get(adapter, [Variant('<none>', None, '',
                                                          {})])]


def _same_weights_distiller(variant: Variant, tmp_path) -> torch.nn.Module:
    """The variant's distiller whose teacher has the student's weights."""
    student_cfg = variant.model()
    torch.manual_seed(0)
    plain = MODELS.build(copy.deepcopy(student_cfg))
    plain.init_weights()
    ckpt = tmp_path / 'same.pth'
    torch.save({'state_dict': plain.state_dict()}, ckpt)
    cfg = copy.deepcopy(student_cfg)
    cfg.update(type=variant.distiller,
               teacher=dict(config=dict(model=copy.deepcopy(student_cfg)),
                            checkpoint=str(ckpt)),
               distill_terms=variant.terms)
    model = MODELS.build(cfg)
    model.load_state_dict(plain.state_dict())
    model.train()
    for module in model.modules():  # the teacher's (eval) BN statistics
        if isinstance(module, _BatchNorm):
            module.eval()
    return model


@pytest.mark.parametrize('adapter,variant', _cases())
def test_teacher_with_the_student_weights_gives_what_the_loss_used(
        adapter, variant, tmp_path):
    known = {v.name: v for v in VARIANTS.get(adapter, [])}
    assert variant in known, (
        f'{adapter} is registered but has no contract variant: add one to '
        'VARIANTS in tests/test_adapter_contract.py.')
    variant = known[variant]
    model = _same_weights_distiller(variant, tmp_path)
    assert type(model.adapter).__name__ == adapter
    torch.manual_seed(0)
    packed = demo_mm_inputs(2, [(3, 128, 160), (3, 96, 128)],
                            num_items=[3, 2], num_classes=NUM_CLASSES,
                            with_mask=variant.with_mask)
    data = model.data_preprocessor(packed, True)
    groups = model.distill_inputs(data['inputs'], data['data_samples']).groups
    assert groups
    kinds = model.distilled_kinds()
    for group in groups:
        keep = group.distillable
        assert keep.any() and keep.sum() == group.valid.sum()
        assert set(group.teacher_tensors) == kinds - {CLASS_LOGITS}
        for kind in kinds:
            student, teacher = group.pair(kind)
            assert student.shape == teacher.shape, (group.name, kind)
            torch.testing.assert_close(
                teacher[keep], student.detach()[keep].float(), rtol=0,
                atol=0, msg=lambda m: f'{group.name} {kind}: {m}')
