# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""Pure math of PKD feature distillation and its EA weighting.

PKD (Cao et al., "PKD: General Distillation Framework for Object Detectors
via Pearson Correlation Coefficient", NeurIPS 2022) normalises every feature
map to zero mean and unit variance per channel, then takes half the mean
squared error between the normalised student and teacher maps. With the
population standard deviation used here, half the squared distance of two
standardised vectors of length ``M`` divided by ``M`` is ``1 - r``, ``r``
their Pearson correlation: the loss compares the maps' patterns, not their
scales, which is why it tolerates different detectors.

Differences from mmrazor's ``PKDLoss`` (stated, not hidden):

- mmrazor standardises each channel over the whole batch and the positions
  (``(N, H, W)``) with the unbiased standard deviation; here each image's
  channel is standardised over its own positions ``(H, W)`` with the
  population one. So an image's loss does not depend on the other images of
  its batch (or on how a batch is split over processes), and a per-image or
  per-location weight weighs that image's own term.
- The spatial sizes of a student and a teacher level must be equal (levels
  are paired by stride); nothing is resized.

Everything here depends on ``torch`` only. Inputs may be fp16/bf16 (the math
runs in float32; float64 stays float64); the teacher is detached inside.
Values are not validated here (the registered module checks what enters it).
"""
from typing import Optional

import torch
from torch import Tensor

#: Added to the standard deviation before dividing (mmrazor's value): a
#: constant channel standardises to zeros instead of NaN.
FEATURE_NORM_EPS: float = 1e-6


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    """The inputs' promoted dtype, at least float32."""
    dtype = torch.float32
    for tensor in tensors:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def standardize_channels(feat: Tensor,
                         eps: float = FEATURE_NORM_EPS) -> Tensor:
    """Standardise each channel of each image over its spatial positions.

    ``(x - mean) / (std + eps)`` with the mean and the population standard
    deviation of ``x[b, c]`` over ``(H, W)``. A constant channel gives zeros
    and a zero (not NaN) gradient: the variance is clamped to the dtype's
    smallest normal number before its square root, whose gradient at 0 is
    infinite.

    Args:
        feat (Tensor): Feature maps, shape (B, C, H, W), floating.
        eps (float): Added to the standard deviation. Defaults to
            :data:`FEATURE_NORM_EPS`.

    Returns:
        Tensor: Shape (B, C, H, W), in the compute dtype (>= float32).
    """
    feat = feat.to(_compute_dtype(feat))
    mean = feat.mean(dim=(2, 3), keepdim=True)
    var = feat.var(dim=(2, 3), keepdim=True, correction=0)
    std = var.clamp(min=torch.finfo(var.dtype).tiny).sqrt()
    return (feat - mean) / (std + eps)


def pkd_loss_map(student: Tensor,
                 teacher: Tensor,
                 eps: float = FEATURE_NORM_EPS) -> Tensor:
    """PKD's term at every position: half the squared difference of the
    standardised maps, averaged over the channels.

    Its mean over the positions of an image is :func:`pkd_loss_per_image`;
    its mean over the batch and positions is mmrazor's per-level PKD term
    (up to the standardisation, see the module's notes).

    Args:
        student (Tensor): Student maps, shape (B, C, H, W).
        teacher (Tensor): Teacher maps, same shape; detached.
        eps (float): See :func:`standardize_channels`.

    Returns:
        Tensor: Shape (B, H, W), in the compute dtype, differentiable w.r.t.
        ``student``.
    """
    dtype = _compute_dtype(student, teacher)
    norm_s = standardize_channels(student.to(dtype), eps)
    norm_t = standardize_channels(teacher.detach().to(dtype), eps)
    return (norm_s - norm_t).pow(2).mean(dim=1) / 2


def pkd_loss_per_image(student: Tensor,
                       teacher: Tensor,
                       eps: float = FEATURE_NORM_EPS) -> Tensor:
    """PKD's term per image, ``1 - r`` averaged over the channels (``r``:
    the Pearson correlation of a student and a teacher channel over the
    positions), up to ``eps``.

    Args: as :func:`pkd_loss_map`.

    Returns:
        Tensor: Shape (B,), in the compute dtype.
    """
    return pkd_loss_map(student, teacher, eps).mean(dim=(1, 2))


def weighted_level_loss(loss_map: Tensor,
                        weight: Optional[Tensor] = None,
                        normalize: bool = False) -> Tensor:
    """One level's loss: the mean over images and positions of ``loss_map``
    times ``weight``.

    Args:
        loss_map (Tensor): Per-position terms, shape (B, H, W).
        weight (Tensor, optional): Detached weights, shape (B, H, W) (per
            location) or (B,) (per image). None: unweighted (plain PKD).
        normalize (bool): Divide the weights by their mean over the level
            (per image: over the images) first, so the weights redistribute
            the level's loss without rescaling it; zero weights everywhere
            give 0. Defaults to False.

    Returns:
        Tensor: A scalar, in ``loss_map``'s dtype.
    """
    if weight is None:
        return loss_map.mean()
    weight = weight.detach().to(loss_map.dtype)
    if normalize:
        weight = weight / weight.mean().clamp(min=torch.finfo(
            weight.dtype).tiny)
    if weight.dim() == 1:
        weight = weight[:, None, None]
    return (weight * loss_map).mean()


def location_weight_map(row_weights: Tensor, row_mask: Tensor,
                        num_images: int, height: int, width: int) -> Tensor:
    """Per-location weights of one level from per-row weights of a dense
    head's rows (order: image, position row-major, anchor).

    A location's weight is the mean of the weights of its anchors in
    ``row_mask``; a location with none is 0.

    Args:
        row_weights (Tensor): Shape (B * H * W * A,).
        row_mask (Tensor): Which rows carry a weight, same shape, bool.
        num_images (int): B.
        height (int): H.
        width (int): W.

    Returns:
        Tensor: Shape (B, H, W), detached.
    """
    shape = (num_images, height, width, -1)
    mask = row_mask.reshape(shape).to(row_weights.dtype)
    total = (row_weights.detach().reshape(shape) * mask).sum(dim=3)
    return total / mask.sum(dim=3).clamp(min=1)


def image_weights(row_weights: Tensor, row_mask: Tensor, image_index: Tensor,
                  num_images: int) -> Tensor:
    """Per-image weights: the mean of each image's weights in ``row_mask``
    (0 for an image with none), as the paper's code weighs a sample.

    Args:
        row_weights (Tensor): Per-sample weights, shape (N,).
        row_mask (Tensor): Which samples count, shape (N,), bool.
        image_index (Tensor): The image of each sample, shape (N,), long, in
            ``[0, num_images)``.
        num_images (int): B.

    Returns:
        Tensor: Shape (B,), detached.
    """
    mask = row_mask.to(row_weights.dtype)
    total = row_weights.new_zeros(num_images).index_add(
        0, image_index, row_weights.detach() * mask)
    count = row_weights.new_zeros(num_images).index_add(0, image_index, mask)
    return total / count.clamp(min=1)
