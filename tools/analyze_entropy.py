#!/usr/bin/env python
"""EA-KD diagnostics: teacher/student RoI entropies and loss shares, as plots.

Runs the RoI sampling of a training step (no parameter update) over a few
batches of a data set split and, on the sampled RoIs, classifies each RoI with
the teacher's and the student's RoI heads under ``no_grad``. From these logits
(via :mod:`mmdet_eakd.losses.functional`, the same math as training) it writes
to ``--out-dir``:

* ``entropy_hist.png``: histogram of the teacher's RoI entropy ``H_T``
  (at ``--entropy-temperature``), foreground vs background RoIs;
* ``loss_share_quartiles.png`` (the paper's Fig. 5 view): share of the
  distillation loss carried by each ``H_T`` quartile Q1-Q4, plain KD vs EA-KD
  on the same RoIs (stacked bars);
* ``ea_weight_entropy.png`` (the paper's Fig. 3 view): distribution of
  ``w_EA``, box plots of ``H_T`` and ``H_S`` on the top-10% ``H_T`` RoIs, and
  ``H_S`` vs ``H_T`` per RoI;
* ``summary.json``: counts, entropy statistics, quartile edges, loss shares
  per method (``kd``, ``ea_kd``, and ``base`` = weight ``H_T`` alone) and
  top-10% statistics.

Which RoIs and which student:

* with ``--student-config``, the RoIs are the student's sampled RoIs, exactly
  the ones a distillation step distills (every stage's for a Cascade R-CNN):
  the tool builds ``RoIDistillTwoStageDetector`` from the student's model
  config and the teacher, and takes the logit pairs of its public
  ``distill_inputs`` (what its training step passes to the distillation
  loss). The student has the weights of ``--student-checkpoint``, or a random
  initialisation (the state at the start of distillation) without one;
* without ``--student-config``, the RoIs come from the teacher itself: its
  RPN proposals sampled with its ``train_cfg.rcnn`` assigner/sampler (so the
  teacher config needs a ``train_cfg``). The student is then a randomly
  initialised model of the teacher's architecture.

Models run in eval mode (BatchNorm uses running statistics); the data comes
from the config's ``{split}_dataloader`` with its pipeline (training
augmentations included for ``train``). ``--cfg-options`` edits the config
that provides the student model and the data (the student config, or the
teacher config without one).

The collection (:func:`mmdet_eakd.utils.distilled_samples.collect_distilled_samples`),
the probe (:func:`mmdet_eakd.utils.distilled_samples.build_roi_probe`), the
numbers and the plots (:mod:`mmdet_eakd.analysis.roi_entropy`) live in the
package; this file is their command line.

Example::

    python tools/analyze_entropy.py TEACHER_CONFIG TEACHER_CKPT \\
        --student-config STUDENT_CONFIG --student-checkpoint STUDENT_CKPT \\
        --num-batches 50 --out-dir work_dirs/entropy
"""
import argparse
import json
import math
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import mmdet_eakd  # noqa: E402,F401  (first: quiets mmengine)
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmengine.runner.utils import set_random_seed  # noqa: E402

from mmdet_eakd.analysis.roi_entropy import (  # noqa: E402
    METHOD_LABELS, plot_ea_weight_entropy, plot_entropy_hist,
    plot_loss_shares, summarize_roi_entropies)
from mmdet_eakd.distill import load_teacher_config  # noqa: E402
from mmdet_eakd.utils.distilled_samples import (  # noqa: E402
    build_roi_probe, collect_distilled_samples, require_file)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        description='Plot teacher/student RoI entropies and the KD vs EA-KD '
        'loss share per teacher-entropy quartile (EA-KD Fig. 3 and 5 views).')
    parser.add_argument('teacher_config', help='teacher config file')
    parser.add_argument('teacher_checkpoint', help='teacher checkpoint file')
    parser.add_argument(
        '--student-config',
        help='student config (plain or distillation config); its sampled '
        'RoIs are analysed. Default: RoIs of the teacher\'s own RPN and '
        'sampler, with a randomly initialised student of its architecture')
    parser.add_argument(
        '--student-checkpoint',
        help='student weights; without them the student is randomly '
        'initialised')
    parser.add_argument(
        '--split', choices=('train', 'val', 'test'), default='train',
        help='data loader of the config to use (default: train)')
    parser.add_argument(
        '--num-batches', type=_positive_int, default=20,
        help='number of batches to analyse (default: 20)')
    parser.add_argument(
        '--max-rois', type=_positive_int,
        help='stop once this many RoIs are collected (default: no limit)')
    parser.add_argument(
        '--entropy-temperature', type=_positive_float, default=3.0,
        help="temperature T' of the entropies and EA weights (default: 3)")
    parser.add_argument(
        '--temperature', type=_positive_float, default=1.0,
        help='KD temperature T (default: 1)')
    parser.add_argument(
        '--seed', type=int, default=0,
        help='random seed (data order, sampling, random init; default: 0)')
    parser.add_argument(
        '--out-dir', default='work_dirs/analyze_entropy',
        help='output directory (default: work_dirs/analyze_entropy)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the student config (or of the teacher '
        'config without a student), e.g. '
        'train_dataloader.dataset.data_root=data/synthetic/')
    args = parser.parse_args(argv)
    if args.student_checkpoint and not args.student_config:
        parser.error('--student-checkpoint needs --student-config')
    return args


def _positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {value}')
    return value


def _positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f'must be a number > 0, got {text}')
    return value


def run(args: argparse.Namespace) -> Dict[str, object]:
    """Collect the logits, write the plots and ``summary.json``.

    Returns:
        dict: The summary as written to ``summary.json``.
    """
    require_file(args.teacher_checkpoint, 'Teacher checkpoint')
    if args.student_checkpoint:
        require_file(args.student_checkpoint, 'Student checkpoint')
    if args.student_config:
        require_file(args.student_config, 'Student config')
        cfg = Config.fromfile(args.student_config)
    else:
        cfg = load_teacher_config(args.teacher_config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    # The 'current' logger: keeps mmengine's per-parameter init dump quiet.
    if not MMLogger.check_instance_created('analyze_entropy'):
        MMLogger.get_instance('analyze_entropy', log_level='WARNING')
    set_random_seed(args.seed)
    probe, separate_student = build_roi_probe(
        cfg.model, args.teacher_config, args.teacher_checkpoint,
        args.student_checkpoint, teacher_samples=args.student_config is None)
    if args.student_config is None:
        note = 'RoIs from the teacher; random-init student'
    elif args.student_checkpoint is None:
        note = 'student: random init'
    else:
        note = 'student: trained'
    loader_cfg = cfg.get(f'{args.split}_dataloader')
    if not loader_cfg:
        raise ValueError(f'The config has no {args.split}_dataloader.')
    samples = collect_distilled_samples(
        probe, Runner.build_dataloader(loader_cfg, seed=args.seed),
        args.num_batches, student=separate_student,
        max_samples=args.max_rois, progress=True)
    entropies = summarize_roi_entropies(
        samples.student, samples.teacher, samples.labels,
        temperature=args.temperature,
        entropy_temperature=args.entropy_temperature)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_entropy_hist(entropies, out_dir / 'entropy_hist.png')
    plot_loss_shares(entropies, out_dir / 'loss_share_quartiles.png', note)
    plot_ea_weight_entropy(entropies, out_dir / 'ea_weight_entropy.png', note)
    summary = dict(
        teacher=dict(config=args.teacher_config,
                     checkpoint=args.teacher_checkpoint),
        student=dict(config=args.student_config,
                     checkpoint=args.student_checkpoint, note=note),
        split=args.split, **entropies.summary)
    summary['counts'] = dict(batches=samples.batches, images=samples.images,
                             **summary['counts'])
    (out_dir / 'summary.json').write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = parse_args(argv)
    try:
        summary = run(args)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as error:
        print(f'analyze_entropy.py: error: {error}', file=sys.stderr)
        return 1
    shares = summary['shares']
    print(f"{summary['counts']['rois']} RoIs "
          f"({summary['counts']['foreground']} foreground) from "
          f"{summary['counts']['images']} images. Loss share of Q4 / Q3+Q4: "
          + ', '.join(
              f"{label} {shares[m]['upper_tail']['Q4']:.3f} / "
              f"{shares[m]['upper_tail']['Q3+Q4']:.3f}"
              for m, label in METHOD_LABELS.items()))
    print(f'Wrote plots and summary.json to {args.out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
