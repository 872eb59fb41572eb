#!/usr/bin/env python
"""Where EA-LD puts its weight: EA weight and LD loss share by IoU quartile.

Builds the distiller of a config with a box-distribution term (KD + LD,
EA-KD + EA-LD, ...: an ``EALDLoss`` in ``distill_terms``) with the given
teacher (and optionally student) checkpoint, runs its student's loss pass and
the teacher on ``--num-batches`` training batches (eval mode, no parameter
update) through the public ``distill_inputs``, and on exactly the positive
locations the box term distils reports, per quartile of the IoU of the
student's box with its object (GFL's quality target): the mean IoU, the mean
EA weight (``weight_mode='ea'`` with the term's ``T'``, whatever the config's
mode), the teacher's mean edge entropy, and the share of the box term's loss
without EA (LD, times LD's own score weight) and with it; and the rank
correlations of the EA weight and of ``H_T`` with the IoU.

    python tools/analyze_box_entropy.py \\
        configs/synthetic/eakd_eald_gfl_teacher_tiny_synthetic.py \\
        --teacher-checkpoint TEACHER.pth --student-checkpoint STUDENT.pth \\
        --num-batches 20 --out box_weights.json
"""
import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

import mmdet_eakd  # noqa: F401  (first: quiets mmengine)
from mmdet_eakd.utils.distilled_samples import (add_probe_arguments,
                                                check_probe_arguments)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_probe_arguments(parser, 'a config with a box-distribution term')
    parser.add_argument('--out', default=None,
                        help='write the summary as JSON')
    args = parser.parse_args(argv)
    check_probe_arguments(parser, args)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from mmengine.config import Config

    from mmdet_eakd.utils.distilled_samples import box_weights_of_config
    try:
        result = box_weights_of_config(Config.fromfile(args.config),
                                       args.teacher_checkpoint,
                                       args.student_checkpoint,
                                       args.num_batches, args.seed)
    except (ValueError, TypeError, KeyError) as error:
        print(f'analyze_box_entropy.py: error: {error}', file=sys.stderr)
        return 1
    print(f"{result['positives']} positive locations from "
          f"{result['batches']} batches; rank correlation with the IoU: "
          f"EA weight {result['spearman_weight_iou']:+.3f}, teacher edge "
          f"entropy {result['spearman_entropy_t_iou']:+.3f}")
    print('| IoU quartile | mean IoU | mean EA weight | mean H_T | '
          'LD loss share | EA-LD loss share |')
    print('|---|---|---|---|---|---|')
    for q in range(4):
        print(f"| Q{q + 1} | {result['mean_iou'][q]:.3f} | "
              f"{result['mean_weight'][q]:.4f} | "
              f"{result['mean_entropy_t'][q]:.4f} | "
              f"{result['ld_share'][q]:.3f} | {result['ea_ld_share'][q]:.3f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
