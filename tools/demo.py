#!/usr/bin/env python
"""The EA-KD demo: a 3-seed paired study of student, KD and EA-KD on a CPU.

Generates the synthetic data set, trains (and caches) a teacher, then trains
the student alone, with KD and with EA-KD from the same initial weights for
each of 3 seeds, two trainings side by side, and prints mean ± std of COCO AP /
AP50 / AP75 and the paired EA-KD − KD difference with its 95% interval
(written to --work-dir as study.{md,json,png}). ``tools/study.py`` runs the
full study (more seeds, every method).

    python tools/demo.py                 # the demo (see README for its time)
    python tools/demo.py --short         # the same stages, a few iterations
"""
import argparse
from pathlib import Path
from typing import List, Optional

import mmdet_eakd  # noqa: F401  (first: quiets mmengine)
from mmdet_eakd.study import REGIMES, run_study

METHODS = ('student', 'KD', 'EA-KD')
#: What the demo's regime is, printed first: the regime that fits 15 minutes
#: on a 2-core CPU, not the converged one of the README's evidence.
ABOUT = {
    'frcnn': (
        "[demo] regime 'frcnn': the 4-epoch synthetic regime that fits about "
        '15 minutes on 2 CPU cores, teacher included. Its students are far '
        'from converged (about 6-9 AP against a 35-AP teacher), so its '
        'numbers show the pipeline and the paired statistics, not the effect '
        "in a converged regime: the README's Evidence section is where that "
        'is measured (tools/study.py --regime frcnn-r8-conv-n1600-e30 / '
        'frcnn-mv2-conv-n1600-e30, pilots in progress).'),
    'frcnn-short': ("[demo] regime 'frcnn-short' (--short): the demo's "
                    'stages on a tiny set, one short epoch each (CI); its '
                    'numbers mean nothing.'),
}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default=None,
                        help='study folder (default: work_dirs/demo, or '
                        'work_dirs/demo_short with --short)')
    parser.add_argument('--data-root', default=None,
                        help="synthetic data folder, created if needed "
                        "(default: the regime's, data/synthetic or "
                        "data/synthetic_short in the current directory)")
    parser.add_argument('--short', action='store_true',
                        help='CI mode: tiny data set, one short epoch each')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2],
                        help='student seeds (default: %(default)s)')
    parser.add_argument('--jobs', type=int, default=2,
                        help='trainings side by side (default: %(default)s)')
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error('--jobs must be >= 1')
    return args


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    regime = REGIMES['frcnn-short' if args.short else 'frcnn']
    print(ABOUT[regime.name], flush=True)
    work_dir = Path(args.work_dir or
                    ('work_dirs/demo_short' if args.short else 'work_dirs/demo'))
    run_study(regime, METHODS, args.seeds, work_dir, jobs=args.jobs,
              data_root=args.data_root,
              title=f'EA-KD demo ({regime.name}): student vs KD vs EA-KD')


if __name__ == '__main__':
    main()
