#!/usr/bin/env python
"""How the entropy temperature T' ranks positives against background.

Builds the distiller of a KD / EA-KD config with the given teacher (and
optionally student) checkpoint, runs the student's loss pass and the teacher
on ``--num-batches`` training batches (eval mode, no parameter update) through
the public ``distill_inputs``, and on exactly the samples a training step
distills (RoIs, or a dense head's selected locations) reports per ``T'``:
the mean EA weight of positives and of background, the probability that a
random background sample outweighs a random positive, and the share of the
weighted KD loss on positives (and plain KD's, which has no ``T'``) and the
weighted KD loss over the plain one. A positive is confident when the teacher's top class score is >= 0.5.

    python tools/sweep_entropy_temperature.py \\
        configs/synthetic/eakd_gfl_teacher_tiny_synthetic.py \\
        --teacher-checkpoint work_dirs/study_gfl/teacher/teacher.pth \\
        --temperatures 0.5 1 2 3 --num-batches 20 --out sweep.json
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
    add_probe_arguments(parser, 'a distillation (KD / EA-KD) config')
    parser.add_argument('--temperatures', nargs='+', type=float,
                        default=[0.5, 1.0, 2.0, 3.0])
    parser.add_argument('--weight-mode', default='ea',
                        choices=['ea', 'base', 'interact'])
    parser.add_argument('--out', default=None, help='write the rows as JSON')
    args = parser.parse_args(argv)
    check_probe_arguments(parser, args)
    if min(args.temperatures) <= 0:
        parser.error('--temperatures must be > 0')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from mmengine.config import Config

    from mmdet_eakd.utils.distilled_samples import sweep_config
    cfg = Config.fromfile(args.config)
    try:
        result = sweep_config(cfg, args.teacher_checkpoint,
                              args.student_checkpoint, args.temperatures,
                              args.num_batches, args.seed, args.weight_mode)
    except (ValueError, TypeError, KeyError) as error:
        print(f'sweep_entropy_temperature.py: error: {error}',
              file=sys.stderr)
        return 1
    print(f"{result['samples']} samples ({result['positives']} positives) "
          f"from {result['batches']} batches, {result['classifier']} "
          f"classifier, weight mode {result['weight_mode']}")
    print("| T' | mean w, positives | mean w, background | "
          'P(background outweighs a positive) | ... a confident positive | '
          'EA-KD loss share on positives | EA-KD / KD loss |')
    print('|---|---|---|---|---|---|---|')
    for row in result['rows']:
        print(f"| {row['entropy_temperature']:g} | {row['weight_fg']:.4f} | "
              f"{row['weight_bg']:.4f} | {row['bg_outranks_fg']:.3f} | "
              f"{row['bg_outranks_confident_fg']:.3f} | "
              f"{row['ea_fg_share']:.3f} | {row['ea_over_kd']:.3f} |")
    print(f"plain KD loss share on positives: {result['rows'][0]['kd_fg_share']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
