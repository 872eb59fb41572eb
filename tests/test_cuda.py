"""The CUDA path: mmcv's CUDA ops, AMP, teacher autocast / channels-last,
non-finite teacher outputs.

Each test runs on ``cuda`` where torch sees a GPU (``tools/gpu_check.py run``
runs this file there) and skips otherwise; tests whose check also means
something on the CPU run there too (the ``cpu`` parameter), so the suite
exercises their logic on every machine.
"""
from typing import Callable, Dict, List

import pytest
import torch
from conftest import SYNTHETIC_CONFIGS, record_loss_calls
from mmengine.config import Config
from torch import Tensor

import mmdet_eakd  # noqa: F401
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmdet.utils import register_all_modules
from mmdet_eakd.losses import EAKDLoss
from mmdet_eakd.utils import write_random_teacher_checkpoint

register_all_modules()
EAKD_CFG = SYNTHETIC_CONFIGS / 'eakd_frcnn_teacher_tiny_synthetic.py'
CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason='needs a CUDA device')
DEVICES = ['cpu', pytest.param('cuda', marks=CUDA)]


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory):
    """A randomly initialised teacher of the synthetic config."""
    return write_random_teacher_checkpoint(
        Config.fromfile(str(EAKD_CFG)),
        tmp_path_factory.mktemp('teacher') / 'teacher.pth')


def build(teacher_ckpt, device: str, **options) -> torch.nn.Module:
    """The synthetic EA-KD model (same weights for any options), training
    mode, on ``device``."""
    cfg = Config.fromfile(str(EAKD_CFG))
    cfg.model.teacher.checkpoint = str(teacher_ckpt)
    cfg.model.update(options)
    torch.manual_seed(1)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.to(device).train()


def batch(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return demo_mm_inputs(
        batch_size=2, image_shapes=[(3, 160, 160), (3, 128, 160)],
        num_items=[3, 2], num_classes=8)




def losses_of(model, seed: int = 0) -> Dict[str, Tensor]:
    data = model.data_preprocessor(batch(seed), True)
    return model.loss(data['inputs'], data['data_samples'])


@CUDA
def test_mmcv_cuda_ops_match_cpu():
    """The built CUDA kernels of the ops the detectors use agree with the
    CPU kernels: RoIAlign (the RoI heads) and nms (every test-time head)."""
    from mmcv.ops import RoIAlign, nms
    torch.manual_seed(0)
    feats = torch.randn(2, 8, 40, 48)
    xy = torch.rand(64, 2) * 30
    wh = torch.rand(64, 2) * 15 + 1
    rois = torch.cat([torch.randint(0, 2, (64, 1)).float(), xy, xy + wh], 1)
    align = RoIAlign((7, 7), spatial_scale=0.5, sampling_ratio=0)
    torch.testing.assert_close(
        align(feats.cuda(), rois.cuda()).cpu(), align(feats, rois),
        atol=1e-5, rtol=1e-5)
    boxes, scores = rois[:, 1:] * 4, torch.rand(64)
    kept_cpu, keep_cpu = nms(boxes, scores, 0.5)
    kept_gpu, keep_gpu = nms(boxes.cuda(), scores.cuda(), 0.5)
    assert torch.equal(keep_gpu.cpu(), keep_cpu)
    torch.testing.assert_close(kept_gpu.cpu(), kept_cpu)


@CUDA
def test_amp_optim_wrapper_skips_the_step_of_an_inf_logit(teacher_ckpt):
    """An fp16 overflow in the student's logits makes the step's loss NaN,
    not an exception; mmengine's AmpOptimWrapper (GradScaler) skips that
    step and halves its scale; the next clean step updates the student."""
    from mmengine.optim import AmpOptimWrapper
    model = build(teacher_ckpt, 'cuda')
    optim = AmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    teacher_before = {
        n: p.detach().clone() for n, p in model.teacher.named_parameters()
    }

    def overflow(module, args, out):
        cls_score = out[0].clone()
        cls_score[0, 2] = float('inf')
        return (cls_score, ) + tuple(out[1:])

    handle = model.roi_head.bbox_head.register_forward_hook(overflow)
    scale = optim.loss_scaler.get_scale()
    log = model.train_step(batch(0), optim)
    assert not torch.isfinite(log['loss_kd'])
    assert optim.loss_scaler.get_scale() == scale / 2
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), name
    handle.remove()
    log = model.train_step(batch(1), optim)
    assert torch.isfinite(log['loss_kd'])
    assert any(not torch.equal(p, before[n])
               for n, p in model.named_parameters())
    for name, param in model.teacher.named_parameters():
        assert torch.equal(param, teacher_before[name]), name


@pytest.mark.parametrize('device,dtype', [
    ('cpu', 'bf16'),
    pytest.param('cuda', 'fp16', marks=CUDA),
    pytest.param('cuda', 'bf16', marks=CUDA),
])
def test_teacher_autocast(teacher_ckpt, device, dtype):
    """``teacher_autocast``: the teacher's backbone and neck run in the low
    precision, its head and the loss in float32, and its logits stay close
    to the float32 teacher's on the same RoIs."""
    low = {'fp16': torch.float16, 'bf16': torch.bfloat16}[dtype]
    exact = build(teacher_ckpt, device)
    cast = build(teacher_ckpt, device, teacher_autocast=dtype)
    neck_dtypes: List[torch.dtype] = []
    cast.teacher.neck.register_forward_hook(
        lambda m, args, out: neck_dtypes.append(out[0].dtype))
    calls_exact, calls_cast = (record_loss_calls(exact.distill_loss),
                                record_loss_calls(cast.distill_loss))
    losses = losses_of(cast)
    losses_of(exact)
    (seen_cast, ), (seen_exact, ) = calls_cast, calls_exact
    assert neck_dtypes == [low]
    assert seen_cast['teacher'].dtype == torch.float32
    assert losses['loss_kd'].dtype == torch.float32
    assert torch.isfinite(losses['loss_kd'])
    # same student, same RoIs: only the teacher's precision differs
    torch.testing.assert_close(seen_cast['student'], seen_exact['student'],
                               atol=1e-5, rtol=1e-5)
    scale = seen_exact['teacher'].abs().max()
    tolerance = {torch.float16: 1e-2, torch.bfloat16: 5e-2}[low]
    assert (seen_cast['teacher'] - seen_exact['teacher']).abs().max() <= \
        tolerance * scale
    losses['loss_kd'].backward()


@pytest.mark.parametrize('device', DEVICES)
def test_teacher_channels_last(teacher_ckpt, device):
    """``teacher_channels_last``: the teacher's convolutions get
    channels-last inputs and the logits equal the default layout's."""
    default = build(teacher_ckpt, device)
    last = build(teacher_ckpt, device, teacher_channels_last=True)
    layouts: List[bool] = []
    last.teacher.backbone.register_forward_pre_hook(
        lambda m, args: layouts.append(
            args[0].is_contiguous(memory_format=torch.channels_last)))
    calls_default, calls_last = (record_loss_calls(default.distill_loss),
                                  record_loss_calls(last.distill_loss))
    losses_of(default)
    losses = losses_of(last)
    (seen_default, ), (seen_last, ) = calls_default, calls_last
    assert layouts == [True]
    assert torch.isfinite(losses['loss_kd'])
    # other conv kernels (TF32 on a GPU): close, not equal; a misread layout
    # is off by the logits' own scale
    scale = seen_default['teacher'].abs().max()
    assert (seen_last['teacher'] - seen_default['teacher']).abs().max() <= \
        1e-2 * scale


def poison_teacher(model, value: float) -> Callable[[], None]:
    """Make the teacher's first RoI logit row ``value`` (e.g. an overflow of
    its low-precision backbone); returns the hook's remover."""

    def hook(module, args, out):
        cls_score = out[0].clone()
        cls_score[0] = value
        return (cls_score, ) + tuple(out[1:])

    return model.teacher.roi_head.bbox_head.register_forward_hook(
        hook).remove


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_non_finite_teacher_output_never_reaches_the_student(
        teacher_ckpt, device, value):
    """A teacher RoI whose logits are no distribution (an fp16 overflow of
    its low-precision backbone, say) is left out of the KD loss and its
    statistics, without a host read: the step and the student's gradients
    stay finite (also without an AMP optimizer wrapper to skip the step),
    and ``teacher_unusable`` counts it."""
    model = build(teacher_ckpt, device)
    clean = build(teacher_ckpt, device)  # the same weights
    poison_teacher(model, value)
    data = model.data_preprocessor(batch(0), True)
    (group, ) = model.distill_inputs(data['inputs'],
                                     data['data_samples']).groups
    data = clean.data_preprocessor(batch(0), True)
    (reference, ) = clean.distill_inputs(data['inputs'],
                                         data['data_samples']).groups
    assert not group.valid[0] and group.valid[1:].all()
    assert torch.equal(group.teacher[0], torch.zeros_like(group.teacher[0]))
    torch.testing.assert_close(group.teacher[1:], reference.teacher[1:])
    losses = losses_of(model)
    assert losses['teacher_unusable'] == 1
    assert losses_of(clean)['teacher_unusable'] == 0
    # the mean over the other RoIs, with the clean teacher's logits
    expected = model.distill_loss(reference.student[1:].detach(),
                                  reference.teacher[1:], reference.labels[1:])
    torch.testing.assert_close(losses['loss_kd'].detach(), expected)
    model.parse_losses(losses)[0].backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            assert torch.isfinite(param.grad).all(), name


def test_kd_loss_reads_nothing_on_the_host(teacher_ckpt):
    """The distiller's loss on meta tensors, which have no values: masking
    by ``valid`` (no boolean indexing) and the statistics run without a
    host read, which on a GPU would be a sync."""
    from mmdet_eakd.distill import LogitGroup
    model = build(teacher_ckpt, 'cpu')
    student = torch.empty(16, 9, device='meta', requires_grad=True)
    valid = torch.empty(16, dtype=torch.bool, device='meta')
    group = LogitGroup('', student, torch.empty(16, 9, device='meta'),
                       torch.empty(16, dtype=torch.long, device='meta'),
                       valid, 1.0, None, valid)
    losses = model.distill_losses([group])
    assert losses['loss_kd'].shape == () and losses['loss_kd'].is_meta
    losses['loss_kd'].backward()
    assert student.grad.shape == (16, 9)
