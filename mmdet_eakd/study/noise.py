"""How much of a study's spread is evaluation noise: AP on two halves of the
validation set.

Every study run keeps its last evaluation's detections
(``predictions.bbox.json``, see :func:`.runner.train`). The validation images
are split once, at random with a fixed seed, into two disjoint halves; each
run's COCO AP is recomputed on each half with pycocotools (the evaluator
mmdet's ``CocoMetric`` uses). The halves' noises are independent, so the
full set's evaluation noise follows from their difference
(:func:`.stats.half_split_noise_std`), for a run's AP and for a paired
difference between two methods.
"""
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

#: The last evaluation's detections of a run: ``work_dir/<this>.bbox.json``.
PREDICTIONS_PREFIX = 'predictions'
#: Where a run keeps its last evaluation's detections.
PREDICTIONS_FILE = f'{PREDICTIONS_PREFIX}.bbox.json'


def split_halves(image_ids: Sequence[int],
                 seed: int = 0) -> Tuple[List[int], List[int]]:
    """Two disjoint random halves of ``image_ids`` (sizes differ by at most
    one), the same for the same ids and ``seed``.

    Args:
        image_ids (Sequence[int]): Validation image ids, at least 2.
        seed (int): Seed of the permutation.

    Returns:
        tuple[list[int], list[int]]: Half A and half B, each sorted.
    """
    ids = sorted(set(int(i) for i in image_ids))
    if len(ids) < 2:
        raise ValueError(f'two halves need at least 2 images, got {len(ids)}.')
    order = np.random.default_rng(seed).permutation(len(ids))
    half = len(ids) // 2
    return (sorted(ids[i] for i in order[:half]),
            sorted(ids[i] for i in order[half:]))


def subset_ap(coco_gt, detections: list,
              image_ids: Sequence[int]) -> Dict[str, float]:
    """COCO box AP / AP50 / AP75 (points) of ``detections`` on some images.

    Args:
        coco_gt (pycocotools.coco.COCO): The validation annotations.
        detections (list[dict]): COCO result records (``image_id``,
            ``category_id``, ``bbox``, ``score``), as ``CocoMetric`` dumps.
        image_ids (Sequence[int]): The images to evaluate on.

    Returns:
        dict[str, float]: ``AP``, ``AP50``, ``AP75`` in points (x 100); 0 for
        a subset without detections.
    """
    from pycocotools.cocoeval import COCOeval
    ids = set(int(i) for i in image_ids)
    kept = [d for d in detections if int(d['image_id']) in ids]
    if not kept:
        return dict(AP=0.0, AP50=0.0, AP75=0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(kept)
        evaluator = COCOeval(coco_gt, coco_dt, 'bbox')
        evaluator.params.imgIds = sorted(ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ap, ap50, ap75 = (100 * float(v) for v in evaluator.stats[:3])
    return dict(AP=ap, AP50=ap50, AP75=ap75)


def half_aps(ann_file: Path, predictions: Path,
             seed: int = 0) -> Tuple[float, float]:
    """A run's AP on the two halves of the validation set.

    Args:
        ann_file (Path): The validation annotations (COCO json).
        predictions (Path): The run's detections (:data:`PREDICTIONS_FILE`).
        seed (int): Seed of :func:`split_halves`.

    Returns:
        tuple[float, float]: (AP on half A, AP on half B), points.
    """
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(ann_file))
    detections = json.loads(Path(predictions).read_text())
    half_a, half_b = split_halves(coco_gt.getImgIds(), seed)
    return (subset_ap(coco_gt, detections, half_a)['AP'],
            subset_ap(coco_gt, detections, half_b)['AP'])


def half_aps_in_subprocess(ann_file: Path,
                           predictions: Path) -> Tuple[float, float]:
    """:func:`half_aps` in a child interpreter.

    pycocotools prints, and silencing it swaps ``sys.stdout`` for the whole
    process; a study's parallel runs log from threads, whose lines would be
    swallowed meanwhile. The child prints the two APs as JSON.
    """
    out = subprocess.run(
        [sys.executable, '-m', __name__, str(ann_file), str(predictions)],
        check=True, capture_output=True, text=True).stdout
    first, second = json.loads(out.strip().splitlines()[-1])
    return float(first), float(second)


if __name__ == '__main__':
    import argparse
    parser = argparse.ArgumentParser(
        description='Print a run\'s AP on the two validation halves (JSON).')
    parser.add_argument('ann_file', type=Path)
    parser.add_argument('predictions', type=Path)
    args = parser.parse_args()
    print(json.dumps(half_aps(args.ann_file, args.predictions)))
