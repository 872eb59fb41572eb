#!/usr/bin/env python
"""Seeds x methods study of EA-KD on the synthetic data set (CPU).

Trains every method once per seed, paired (same initial weights, data order
and teacher per seed), and reports mean ± std per method and each method's
paired difference with a 95% t-interval, as study.{md,json,png} in --work-dir.
Finished runs are skipped on a rerun, so an interrupted study continues.

    python tools/study.py --jobs 2                       # every method, 5 seeds
    python tools/study.py --methods student KD EA-KD --seeds 0 1 2
    python tools/study.py --regime frcnn-short --seeds 0 1 --methods KD EA-KD

A study of many CPU-hours can span machines: with --record-dir (a folder kept
in git, e.g. mmdet_eakd/study/results/frcnn_conv), the teacher and every
finished run are recorded there, and a rerun in a fresh checkout trains only
what the record lacks; a run still training keeps its last checkpoint there
(runs/{method}/seed{S}.partial/), from which a fresh checkout resumes it.
"""
import argparse
from pathlib import Path
from typing import List, Optional

import mmdet_eakd  # noqa: F401  (first: quiets mmengine)
from mmdet_eakd.study import METHODS, REGIMES, run_study


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--regime', default='frcnn', choices=sorted(REGIMES),
                        help='data, models and schedule (default: %(default)s)')
    parser.add_argument('--methods', nargs='+', default=None,
                        choices=list(METHODS), metavar='METHOD',
                        help='methods to train, of: '
                        f'{" ".join(METHODS)} (default: the regime\'s, e.g. '
                        f'frcnn: {" ".join(REGIMES["frcnn"].methods)}; gfl: '
                        f'{" ".join(REGIMES["gfl"].methods)})')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2, 3, 4],
                        help='student seeds (default: %(default)s)')
    parser.add_argument('--jobs', type=int, default=2,
                        help='trainings side by side; threads are split '
                        'between them (default: %(default)s)')
    parser.add_argument('--work-dir', default=None,
                        help='study folder (default: work_dirs/study_REGIME)')
    parser.add_argument('--data-root', default=None,
                        help="synthetic data folder, created if needed "
                        "(default: the regime's, data/synthetic or "
                        "data/synthetic_short in the current directory)")
    parser.add_argument('--eval-interval', type=int, default=None,
                        help='also evaluate every run every N epochs: '
                        'learning curves (pilots); part of the runs\' keys '
                        '(default: at the end only)')
    parser.add_argument('--teacher-dir', default=None,
                        help='where the teacher is cached; studies of one '
                        'teacher (e.g. its two students) can share it '
                        '(default: WORK_DIR/teacher)')
    parser.add_argument('--record-dir', default=None,
                        help='also record the teacher (weights, result), '
                        'every finished run\'s result, each unfinished run\'s '
                        'last checkpoint and the report here (e.g. a folder '
                        'kept in git); what is recorded is not trained again, '
                        'in any checkout, and an unfinished run resumes '
                        '(default: none)')
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error('--jobs must be >= 1')
    if args.eval_interval is not None and args.eval_interval < 1:
        parser.error('--eval-interval must be >= 1')
    return args


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    work_dir = Path(args.work_dir or f'work_dirs/study_{args.regime}')
    regime = REGIMES[args.regime]
    run_study(regime, args.methods or regime.methods, args.seeds, work_dir,
              jobs=args.jobs, data_root=args.data_root,
              eval_interval=args.eval_interval,
              teacher_dir=args.teacher_dir and Path(args.teacher_dir),
              record_dir=args.record_dir and Path(args.record_dir))


if __name__ == '__main__':
    main()
