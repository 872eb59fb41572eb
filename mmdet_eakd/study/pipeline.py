"""A whole study: data set, cached teacher, shared initial weights, runs, report."""
import json
import os
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..scope import config_path
from .methods import Method, Regime, resolve_methods
from .report import StudyReport, build_report, write_report
from .runner import (Log, Run, method_config, print_line, run_all,
                     run_config, run_key, threads_per_job, write_json)


def prepare_teacher(regime: Regime, data_root: Path, teacher_dir: Path,
                    threads: int, log: Log = print_line,
                    record_dir: Optional[Path] = None) -> Tuple[Path, dict]:
    """Train the regime's teacher once and cache it in ``teacher_dir``.

    The cache is keyed by the teacher's whole run config (bases resolved,
    schedule included; the data folder's location left out) and the data set
    manifest; a changed key retrains it. Studies of regimes with the same
    teacher (e.g. the two students of one teacher) can share ``teacher_dir``.
    The checkpoint holds the weights only (``state_dict``, ``meta.key``).
    With ``record_dir``, the checkpoint and its result are also kept in
    ``record_dir/teacher/`` and taken from there when ``teacher_dir`` lacks
    them (a study continued on another machine).

    Returns:
        tuple[Path, dict]: ``teacher_dir/teacher.pth`` and the teacher's
        result (``metrics``, ``curve``, ...; see :func:`.runner.train`).
    """
    import torch
    config = run_config(regime.teacher_config, data_root,
                        regime.teacher_epochs, seed=0,
                        model=regime.model_overrides(),
                        eval_interval=regime.teacher_eval_interval)
    key = run_key(portable_text(config, data=data_root),
                  data_root / 'synthetic_manifest.json')
    checkpoint = teacher_dir / 'teacher.pth'
    recorded = record_dir / 'teacher' if record_dir is not None else None
    run = Run(name='teacher', seed=None, work_dir=teacher_dir / 'run',
              config=config, epochs=regime.teacher_epochs, key=key,
              threads=threads,
              record_file=recorded / 'result.json' if recorded else None)
    result = run.done()
    if (not checkpoint.is_file() and recorded is not None
            and (recorded / 'teacher.pth').is_file()):
        from_record = _read_json(run.record_file)
        if from_record is not None and from_record.get('key') == key:
            run.work_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(recorded / 'teacher.pth', checkpoint)
            write_json(run.result_file, from_record)
            result = from_record
            log(f'[study] teacher taken from the record {recorded}')
    trained = result is None or not checkpoint.is_file()
    if not trained:
        log(f'[study] reusing cached teacher {checkpoint} (AP '
            f'{100 * result["metrics"]["coco/bbox_mAP"]:.1f})')
    else:
        log(f'[study] training the teacher ({regime.teacher_epochs} epochs, '
            f'{threads} threads)')
        started = time.time()
        result = run_all([run], jobs=1, log=log)['teacher']
        last = (run.work_dir / 'last_checkpoint').read_text().strip()
        state = torch.load(last, map_location='cpu', weights_only=False)
        tmp = checkpoint.with_suffix('.tmp')
        torch.save(dict(state_dict=state['state_dict'], meta=dict(key=key)),
                   tmp)
        os.replace(tmp, checkpoint)
        log(f'[study] teacher AP '
            f'{100 * result["metrics"]["coco/bbox_mAP"]:.1f} '
            f'({time.time() - started:.0f} s)')
    # the record holds this teacher: a new one, or a cached one it lacks
    if recorded is not None and (
            trained or _read_json(run.record_file) != result
            or not (recorded / 'teacher.pth').is_file()):
        recorded.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(checkpoint, recorded / 'teacher.pth')
        write_json(run.record_file, result)
    return checkpoint, result


#: A study folder's (or record's) regime, written when a study first uses it.
REGIME_FILE = 'regime.json'


def claim_folder(folder: Path, regime: Regime, what: str) -> None:
    """Refuse ``folder`` when it holds the study of another regime (its
    ``regime.json`` or report says so), else mark it as ``regime``'s.

    A study folder and a record hold runs by method and seed only; a study
    of another regime there would replace their results, checkpoints and
    report with its own.

    Args:
        folder (Path): The study folder or record.
        regime (Regime): The study's regime.
        what (str): The option that named the folder, for the message.

    Raises:
        ValueError: ``folder`` is another regime's.
    """
    for name in (REGIME_FILE, 'study.json'):
        held = _read_json(folder / name)
        if held is None:
            continue
        held = held['regime']
        held = held['name'] if isinstance(held, dict) else held
        if held != regime.name:
            raise ValueError(
                f'{what} {folder} holds the study of regime {held!r} '
                f'({folder / name}); this study is of regime '
                f'{regime.name!r} and would replace its runs. Give each '
                f'regime its own {what}.')
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / REGIME_FILE).is_file():
        write_json(folder / REGIME_FILE, dict(regime=regime.name))


def _read_json(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.is_file() else None


def portable_text(config, **paths: Path) -> str:
    """``config``'s text with each of ``paths`` (absolute folders) replaced
    by ``<name>``: a run's key does not depend on where the study, its data
    or its teacher lie, so that a record made in one checkout counts in
    another."""
    text = config.pretty_text
    for name, path in sorted(paths.items(), key=lambda kv: -len(str(kv[1]))):
        text = text.replace(str(path), f'<{name}>')
    return text


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


def _add_wall_time(folder: Path, seconds: float) -> float:
    """Add this invocation's wall time to the study's; return the total.

    A resumed study is timed over all its invocations
    (``folder/wall_time.json``; ``folder`` is the record folder when the
    study has one, so that the total outlives the work folder).
    """
    path = folder / 'wall_time.json'
    times = json.loads(path.read_text()) if path.is_file() else []
    times.append(round(seconds, 1))
    path.write_text(json.dumps(times))
    return sum(times)


def _run_threads(results: Dict[str, dict], default: int) -> int:
    """The threads the runs trained with (their results say; a recorded
    run may have been trained by another invocation): the largest, or
    ``default`` for results that do not say."""
    return max(result.get('threads', default) for result in results.values())


def _measured_loss_weight(method: str, source: str,
                          runs: Sequence[Run]) -> float:
    """The mean over ``source``'s runs of the EA weight each logged over
    training: the ``loss_weight`` of ``method`` (see
    ``Method.loss_weight_from``)."""
    weights = [
        run.done()['ea_weight'] for run in runs
        if run.name.startswith(f'{source}/')
    ]
    if not weights or any(w is None for w in weights):
        raise RuntimeError(
            f'{method} takes its loss_weight from the EA weight logged by '
            f'the {source} runs, but they logged none; train {source} with '
            'an EA weight mode.')
    return round(sum(weights) / len(weights), 4)


def run_study(regime: Regime,
              methods: Sequence[str],
              seeds: Sequence[int],
              work_dir: Path,
              jobs: int = 1,
              data_root: Optional[str] = None,
              title: Optional[str] = None,
              log: Log = print_line,
              eval_interval: Optional[int] = None,
              teacher_dir: Optional[Path] = None,
              record_dir: Optional[Path] = None) -> StudyReport:
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
        eval_interval (int, optional): Evaluate every run every that many
            epochs too (learning curves, e.g. for pilots); part of the runs'
            keys.
        teacher_dir (Path, optional): The teacher's cache; defaults to
            ``work_dir/teacher``.
        record_dir (Path, optional): A folder (e.g. kept in git) that
            records the teacher (weights and result) and every finished
            run's result (``runs/{method}/seed{S}.json``); what it records
            is not trained again, also in another checkout whose
            ``work_dir`` is gone. Keys leave out where the study, data and
            teacher lie, so a record counts wherever the same code trains
            on the same data. The report is written there too.

    Returns:
        StudyReport: What was written to ``study.{md,json,png}``.
    """
    chosen = resolve_methods(methods, regime)
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f'seeds must be distinct non-negative integers, got '
                         f'{list(seeds)}.')
    threads = threads_per_job(jobs)
    work_dir = Path(work_dir).resolve()
    claim_folder(work_dir, regime, '--work-dir')
    record_dir = Path(record_dir).resolve() if record_dir else None
    if record_dir is not None:
        claim_folder(record_dir, regime, '--record-dir')
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
        teacher_dir = Path(teacher_dir or work_dir / 'teacher').resolve()
        teacher, teacher_result = prepare_teacher(
            regime, root, teacher_dir, threads=threads_per_job(1), log=log,
            record_dir=record_dir)
    ann_file = root / 'annotations' / 'instances_val.json'

    def make_runs(phase: Sequence[Method], done: Sequence[Run]) -> List[Run]:
        weights = {
            method.name: _measured_loss_weight(method.name,
                                               method.loss_weight_from, done)
            for method in phase if method.loss_weight_from is not None
        }
        runs = []
        for seed in seeds:
            init = write_init(regime, seed,
                              work_dir / 'init' / f'seed{seed}.pth')
            for method in phase:
                config = method_config(method, regime, root, seed, init,
                                       teacher, eval_interval,
                                       weights.get(method.name))
                files = [init] + ([teacher] if method.distills else [])
                text = portable_text(config, work_dir=work_dir, data=root,
                                     **({'teacher_dir': teacher.parent}
                                        if teacher is not None else {}))
                runs.append(Run(
                    name=f'{method.name}/seed{seed}', seed=seed,
                    work_dir=work_dir / 'runs' / method.name / f'seed{seed}',
                    config=config, epochs=regime.student_epochs,
                    key=run_key(text, *files), threads=threads,
                    record_file=(record_dir / 'runs' / method.name /
                                 f'seed{seed}.json' if record_dir else None),
                    halves_ann_file=ann_file if regime.noise_halves else None))
        return runs

    # Methods whose loss weight is measured train after the others.
    first = make_runs([m for m in chosen if m.loss_weight_from is None], [])
    results = run_all(first, jobs=jobs, log=log)
    second = make_runs(
        [m for m in chosen if m.loss_weight_from is not None], first)
    if second:
        results.update(run_all(second, jobs=jobs, log=log))

    teacher_metrics = teacher_curve = None
    if teacher is not None:
        teacher_metrics = teacher_result['metrics']
        teacher_curve = teacher_result.get('curve')
    halves = None
    if regime.noise_halves:
        missing = [name for name, result in results.items()
                   if 'halves' not in result]
        if missing:
            raise RuntimeError(
                f'runs {missing} have no AP on the validation halves (they '
                'were trained before studies measured it); delete their '
                'result.json (and record) and rerun the study to retrain '
                'them.')
        halves = {name: result['halves'] for name, result in results.items()}
    report = build_report(
        regime=regime, methods=[m.name for m in chosen], seeds=list(seeds),
        results=results, teacher_metrics=teacher_metrics, halves=halves,
        teacher_curve=teacher_curve,
        wall_time_s=_add_wall_time(record_dir or work_dir,
                                   time.time() - started),
        jobs=jobs, threads=_run_threads(results, threads), title=title)
    log('\n' + report.markdown)
    for folder in [work_dir] + ([record_dir] if record_dir else []):
        write_report(report, folder)
        log(f'[study] wrote {folder}/study.md, study.json, study.png')
    return report
