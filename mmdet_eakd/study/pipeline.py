"""A whole study: data set, cached teacher, shared initial weights, runs, report."""
import json
import os
import time
from pathlib import Path
from typing import Optional, Sequence

from ..scope import config_path
from .methods import Regime, resolve_methods
from .report import StudyReport, build_report, write_report
from .runner import (Log, Run, final_metrics, method_config, print_line,
                     run_all, run_config, run_key, threads_per_job)


def prepare_teacher(regime: Regime, data_root: Path, work_dir: Path,
                    threads: int, log: Log = print_line) -> Path:
    """Train the regime's teacher once and cache it in ``work_dir/teacher``.

    The cache is keyed by the teacher's whole run config (bases resolved,
    schedule included) and the data set manifest; a changed key retrains it.

    Returns:
        Path: ``work_dir/teacher/teacher.pth``.
    """
    teacher_dir = work_dir / 'teacher'
    config = run_config(regime.teacher_config, data_root,
                        regime.teacher_epochs, seed=0,
                        model=regime.model_overrides())
    key = run_key(config.pretty_text, data_root / 'synthetic_manifest.json')
    run = Run(name='teacher', seed=None, work_dir=teacher_dir / 'run',
              config=config, epochs=regime.teacher_epochs, key=key,
              threads=threads)
    checkpoint = teacher_dir / 'teacher.pth'
    stored = run.done()
    if stored is not None and checkpoint.is_file():
        log(f'[study] reusing cached teacher {checkpoint} (AP '
            f'{100 * stored["metrics"]["coco/bbox_mAP"]:.1f})')
        return checkpoint
    log(f'[study] training the teacher ({regime.teacher_epochs} epochs, '
        f'{threads} threads)')
    started = time.time()
    result = run_all([run], jobs=1, log=log)['teacher']
    pointer = run.work_dir / 'last_checkpoint'
    os.replace(pointer.read_text().strip(), checkpoint)
    log(f'[study] teacher AP {100 * result["metrics"]["coco/bbox_mAP"]:.1f} '
        f'({time.time() - started:.0f} s)')
    return checkpoint


def write_init(regime: Regime, seed: int, path: Path) -> Path:
    """The initial student weights of ``seed``, shared by every method."""
    if path.is_file():
        return path
    import torch

    from mmdet_eakd.utils import build_offline_model
    path.parent.mkdir(parents=True, exist_ok=True)
    model = build_offline_model(config_path(regime.student_config),
                                path.parent, seed=seed)
    tmp = path.with_suffix('.tmp')
    torch.save({'state_dict': model.state_dict(), 'meta': {'seed': seed}}, tmp)
    os.replace(tmp, path)
    return path


def _add_wall_time(work_dir: Path, seconds: float) -> float:
    """Add this invocation's wall time to the study's; return the total.

    A resumed study is timed over all its invocations
    (``work_dir/wall_time.json``).
    """
    path = work_dir / 'wall_time.json'
    times = json.loads(path.read_text()) if path.is_file() else []
    times.append(round(seconds, 1))
    path.write_text(json.dumps(times))
    return sum(times)


def run_study(regime: Regime,
              methods: Sequence[str],
              seeds: Sequence[int],
              work_dir: Path,
              jobs: int = 1,
              data_root: Optional[str] = None,
              title: Optional[str] = None,
              log: Log = print_line) -> StudyReport:
    """Train every method with every seed (paired) and write the report.

    Args:
        regime (Regime): Data, models and schedule.
        methods (Sequence[str]): Method names (see ``METHODS``).
        seeds (Sequence[int]): Student seeds.
        work_dir (Path): Study folder (created; reused on a rerun).
        jobs (int): Trainings run side by side (threads split between them).
        data_root (str, optional): Synthetic data folder (created if needed);
            defaults to the regime's. Relative to the current directory.
        title (str, optional): Report title.
        log (callable): Receives progress lines.

    Returns:
        StudyReport: What was written to ``study.{md,json,png}``.
    """
    chosen = resolve_methods(methods, regime)
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f'seeds must be distinct non-negative integers, got '
                         f'{list(seeds)}.')
    threads = threads_per_job(jobs)
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()

    from mmdet_eakd.datasets import generate_synthetic_coco
    root = Path(data_root or regime.data_root).resolve()
    log(f'[study] data set {root} ({regime.num_train} train / '
        f'{regime.num_val} val images)')
    info = generate_synthetic_coco(root, num_train=regime.num_train,
                                   num_val=regime.num_val, seed=0)
    log('[study]   generated' if info['generated'] else
        '[study]   reused existing set')

    teacher = None
    if any(m.distills for m in chosen):
        teacher = prepare_teacher(regime, root, work_dir,
                                  threads=threads_per_job(1), log=log)

    runs = []
    for seed in seeds:
        init = write_init(regime, seed, work_dir / 'init' / f'seed{seed}.pth')
        for method in chosen:
            config = method_config(method, regime, root, seed, init,
                                   teacher)
            files = [init] + ([teacher] if method.distills else [])
            runs.append(Run(name=f'{method.name}/seed{seed}', seed=seed,
                            work_dir=work_dir / 'runs' / method.name /
                            f'seed{seed}',
                            config=config, epochs=regime.student_epochs,
                            key=run_key(config.pretty_text, *files),
                            threads=threads))
    results = run_all(runs, jobs=jobs, log=log)

    teacher_metrics = (final_metrics(work_dir / 'teacher' / 'run')
                       if teacher is not None else None)
    report = build_report(
        regime=regime, methods=[m.name for m in chosen], seeds=list(seeds),
        results=results, teacher_metrics=teacher_metrics,
        wall_time_s=_add_wall_time(work_dir, time.time() - started),
        jobs=jobs, threads=threads, title=title)
    write_report(report, work_dir)
    log('\n' + report.markdown)
    log(f'[study] wrote {work_dir}/study.md, study.json, study.png')
    return report
