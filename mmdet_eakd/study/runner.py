"""Run a seeds x methods study: paired, parallel, resumable.

Layout of a study folder::

    teacher/teacher.pth, teacher.json      the cached teacher (trained once)
    init/seed{S}.pth                        the students' initial weights
    runs/{method}/seed{S}/                  one training run: config.py,
                                            train.log, result.json, ...
    study.md, study.json, study.png         the report (see report.py)

Paired design: for a seed ``S``, every method starts from ``init/seed{S}.pth``,
trains with ``randomness.seed = S`` (same data order and augmentation) and the
distillation methods use the same teacher. A run is done when its
``result.json`` exists with the same key (a digest of its config, initial
weights and teacher); a rerun skips it, so an interrupted study continues where
it stopped. ``jobs`` runs train side by side, each with ``cores // jobs``
threads.
"""
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import (Any, Callable, Dict, Iterator, List, Optional, Sequence,
                    Tuple)

from mmengine.config import Config

from ..scope import config_path
from .methods import LD_TERM, PKD_LOSS_WEIGHT, Method, Regime
from .noise import (PREDICTIONS_FILE, PREDICTIONS_PREFIX,
                    half_aps_in_subprocess)

METRICS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75')
#: A run keeps a checkpoint (the last one only) every this many epochs, so that
#: a killed run resumes from it (see :func:`train`).
RESUME_INTERVAL = 3
#: The key of the run whose checkpoints and logs ``work_dir`` holds, written
#: when the run starts (``result.json`` is written when it ends).
STARTED_FILE = 'started.json'
#: Beside a run's record file (``seed{S}.json`` -> ``seed{S}.partial/``), the
#: state an unfinished run resumes from: its key, last checkpoint and logs
#: (:func:`snapshot_partial`). A study continued on another machine resumes
#: the run from there (:func:`prepare_work_dir`); a finished run removes it.
PARTIAL_SUFFIX = '.partial'
_TIMESTAMP_DIR = re.compile(r'\d{8}_\d{6}')
_PROGRESS = re.compile(r'Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\]')

Log = Callable[[str], None]


def print_line(message: str) -> None:
    """Default progress sink: print and flush."""
    print(message, flush=True)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> str:
    """Digest of a file's bytes, or of a checkpoint's weights (``.pth``).

    A checkpoint is digested by its ``state_dict`` (names, dtypes, shapes and
    values, in name order), not its bytes: the same weights saved twice, or on
    another machine, give the same digest whatever the file's metadata. A
    study keys every run by its teacher: the digest of an unchanged file
    (same size and modification time) is computed once per process.
    """
    stat = Path(path).stat()
    return _cached_digest(Path(path).resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _cached_digest(path: Path, size: int, mtime_ns: int) -> str:
    """:func:`_file_digest` of ``path`` as it is at ``size`` and
    ``mtime_ns`` (the cache key)."""
    digest = hashlib.sha256()
    if path.suffix == '.pth':
        import torch
        state = torch.load(path, map_location='cpu', weights_only=True)
        for name, tensor in sorted(state.get('state_dict', state).items()):
            digest.update(f'{name}|{tensor.dtype}|{tuple(tensor.shape)}|'
                          .encode())
            flat = tensor.detach().contiguous().reshape(-1)
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()
    with open(path, 'rb') as file:
        for block in iter(lambda: file.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` as JSON atomically (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix('.tmp')
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def run_config(base: str, data_root: Path, epochs: int, seed: int,
               model: Optional[Dict[str, Any]] = None,
               load_from: Optional[Path] = None,
               eval_interval: Optional[int] = None) -> Config:
    """The config of one run: ``base`` trained on ``data_root``.

    Linear warm-up over 100 iterations, then the learning rate drops 10x at
    2/3 of the schedule and again before the last epoch; evaluated (COCO AP)
    at the end (and every ``eval_interval`` epochs: a learning curve);
    ``randomness.seed = seed``.

    Args:
        base (str): The config it starts from: a file or a scope name (see
            :func:`mmdet_eakd.scope.config_path`).
        data_root (Path): The synthetic data set.
        epochs (int): Training epochs.
        seed (int): ``randomness.seed``.
        model (dict, optional): Merged into ``model``.
        load_from (Path, optional): Initial weights.
        eval_interval (int, optional): Evaluate every that many epochs too;
            None evaluates at the end only.

    Returns:
        Config: The whole config (bases resolved), as the run trains it.
    """
    if eval_interval is not None and not 1 <= eval_interval <= epochs:
        raise ValueError(f'eval_interval must be in [1, {epochs}] (the '
                         f'epochs), got {eval_interval}.')
    root = f'{data_root}/'
    ann = f'{root}annotations/instances_val.json'
    milestones = sorted({max(1, round(epochs * 2 / 3)), max(1, epochs - 1)})
    milestones = [m for m in milestones if m < epochs]
    cfg = Config.fromfile(config_path(base))
    cfg.merge_from_dict(dict(
        train_dataloader=dict(dataset=dict(data_root=root)),
        val_dataloader=dict(dataset=dict(data_root=root)),
        test_dataloader=dict(dataset=dict(data_root=root)),
        val_evaluator=dict(ann_file=ann),
        test_evaluator=dict(ann_file=ann),
        train_cfg=dict(max_epochs=epochs,
                       val_interval=eval_interval or epochs),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
                 end=100),
            dict(type='MultiStepLR', by_epoch=True, begin=0, end=epochs,
                 milestones=milestones, gamma=0.1)
        ],
        randomness=dict(seed=seed),
        default_hooks=dict(
            logger=dict(interval=10),
            checkpoint=dict(interval=epochs, max_keep_ckpts=1)),
        model=model or {}))
    if load_from is not None:
        cfg.load_from = str(load_from)
    return cfg


def method_config(method: Method, regime: Regime, data_root: Path, seed: int,
                  init: Path, teacher: Optional[Path],
                  eval_interval: Optional[int] = None,
                  loss_weight: Optional[float] = None) -> Config:
    """The config of one run of ``method`` for ``seed``.

    Args:
        method (Method): The arm.
        regime (Regime): Its configs and schedule.
        data_root (Path): The synthetic data set.
        seed (int): The student's seed.
        init (Path): The student's initial weights.
        teacher (Path, optional): The trained teacher (distilling methods).
        eval_interval (int, optional): See :func:`run_config`.
        loss_weight (float, optional): The loss's ``loss_weight`` of a
            method whose weight is measured (``method.loss_weight_from``);
            required by those, refused for the others.

    Returns:
        Config: The run's whole config (see :func:`run_config`).
    """
    if (loss_weight is None) != (method.loss_weight_from is None):
        raise ValueError(
            f'{method.name}: a loss_weight is given exactly for the methods '
            'whose weight is measured from another method\'s runs '
            f'(loss_weight_from={method.loss_weight_from!r}); got '
            f'loss_weight={loss_weight!r}.')
    model = regime.model_overrides()
    if not method.distills:
        return run_config(regime.student_config, data_root,
                          regime.student_epochs, seed, model, load_from=init,
                          eval_interval=eval_interval)
    if teacher is None:
        raise ValueError(f'{method.name} distils, so its run needs the '
                         'trained teacher checkpoint; got None.')
    model.update(teacher=dict(checkpoint=str(teacher)))
    if method.loss_type is not None:
        loss = dict(type=regime.loss_type(method),
                    weight_mode=method.weight_mode)
        if method.entropy_temperature is not None:
            loss['entropy_temperature'] = method.entropy_temperature
        if method.loss_weight is not None:
            loss['loss_weight'] = method.loss_weight
        if loss_weight is not None:
            loss['loss_weight'] = loss_weight
        model.update(distill_loss=loss)
    if (method.feature_weight_mode is not None
            or method.box_weight_mode is not None):
        # named terms replace distill_loss: cls (the KD config's logit loss
        # with the arm's override, if it has one), box (LD on the box-edge
        # distributions) and feat (PKD on the FPN levels)
        terms = {}
        if 'distill_loss' in model:
            kd_loss = Config.fromfile(config_path(
                regime.kd_config)).model.distill_loss.to_dict()
            terms['cls'] = dict(kd_loss, **model.pop('distill_loss'))
        if method.box_weight_mode is not None:
            terms['box'] = dict(LD_TERM, weight_mode=method.box_weight_mode)
        if method.feature_weight_mode is not None:
            feat = dict(type='EAPKDLoss',
                        weight_mode=method.feature_weight_mode,
                        loss_weight=PKD_LOSS_WEIGHT)
            if regime.feature_channels is not None:
                feat.update(student_channels=regime.feature_channels[0],
                            teacher_channels=regime.feature_channels[1])
            terms['feat'] = feat
        model.update(distill_loss=None, distill_terms=terms)
    if method.distill_locations is not None:
        model['distill_locations'] = method.distill_locations
    if method.distill_rois is not None:
        model['distill_rois'] = method.distill_rois
    return run_config(regime.kd_config, data_root, regime.student_epochs,
                      seed, model, load_from=init,
                      eval_interval=eval_interval)


def _logged_records(work_dir: Path) -> List[dict]:
    """Every record logged under ``work_dir``, over all its invocations
    (a resumed run logs into a new timestamped folder), in order."""
    runs = sorted(work_dir.glob('*/vis_data/scalars.json'))
    if not runs:
        raise RuntimeError(f'no metrics were logged under {work_dir}')
    return [
        json.loads(line) for run in runs
        for line in run.read_text().splitlines()
    ]


def _dedup_steps(records: List[dict]) -> List[dict]:
    """``records`` with one training record per iteration: a resumed run logs
    again the iterations between its last checkpoint and the kill, and the
    last logged value wins; evaluation records pass unchanged."""
    last = {
        record['step']: index
        for index, record in enumerate(records)
        if METRICS[0] not in record and 'step' in record
    }
    return [
        record for index, record in enumerate(records)
        if METRICS[0] in record or 'step' not in record
        or last[record['step']] == index
    ]


def evaluations(work_dir: Path) -> List[Tuple[int, Dict[str, float]]]:
    """The COCO evaluations logged under ``work_dir``: ``(epoch, metrics)``
    per evaluated epoch, in order (an epoch evaluated twice, e.g. before
    and after a resume, counts once, its last value)."""
    by_epoch: Dict[int, Dict[str, float]] = {}
    for record in _logged_records(work_dir):
        if METRICS[0] in record:
            by_epoch[int(record['step'])] = {
                key: float(record[key])
                for key in METRICS
            }
    if not by_epoch:
        raise RuntimeError(f'{work_dir} holds no COCO evaluation')
    return sorted(by_epoch.items())


def logged_mean(work_dir: Path, key: str) -> Optional[float]:
    """The mean of training statistic ``key`` (e.g. ``'ea_weight'``) over
    every logged iteration under ``work_dir``; None if it was not logged."""
    values = [
        float(record[key])
        for record in _dedup_steps(_logged_records(work_dir))
        if key in record and METRICS[0] not in record
    ]
    return sum(values) / len(values) if values else None


#: The logged training statistics whose per-epoch means a run's result keeps
#: (``stats_by_epoch``): distillation losses and EA statistics, named terms'
#: included (``ea_weight_cls``, ...).
EPOCH_STAT_PREFIXES = ('loss_kd', 'ea_weight', 'entropy_t', 'entropy_s',
                       'kd_fg_share', 'kd_bg_share', 'teacher_unusable')


def logged_epoch_means(work_dir: Path,
                       prefixes: Sequence[str] = EPOCH_STAT_PREFIXES
                       ) -> Dict[str, List[float]]:
    """The mean per training epoch of every logged statistic whose name
    starts with one of ``prefixes``, over the logged iterations (a
    re-logged iteration once).

    Returns:
        dict[str, list[float]]: Statistic -> its mean in epoch 1, 2, ... (an
        epoch without a logged value of it: None).
    """
    by_epoch: Dict[str, Dict[int, List[float]]] = {}
    for record in _dedup_steps(_logged_records(work_dir)):
        if METRICS[0] in record or 'epoch' not in record:
            continue
        for key, value in record.items():
            if key.startswith(tuple(prefixes)):
                by_epoch.setdefault(key, {}).setdefault(
                    int(record['epoch']), []).append(float(value))
    last = max((max(epochs) for epochs in by_epoch.values()), default=0)
    return {
        key: [
            round(sum(epochs[e]) / len(epochs[e]), 6) if e in epochs else None
            for e in range(1, last + 1)
        ]
        for key, epochs in sorted(by_epoch.items())
    }


@dataclass
class Run:
    """One training run of a study."""
    name: str
    seed: Optional[int]
    work_dir: Path
    config: Config
    epochs: int
    key: str
    threads: int
    #: Where the result is recorded too (e.g. a folder kept in git), so that
    #: the run counts as done on another machine, its work dir gone.
    record_file: Optional[Path] = None
    #: The validation annotations: when set, the result also holds the run's
    #: AP on the two halves of the validation set (``halves``, see
    #: :func:`.noise.half_aps`).
    halves_ann_file: Optional[Path] = None
    progress: float = 0.0
    #: ``progress`` when this invocation started the run (a resumed run's
    #: epochs before its checkpoint): the ETA counts only what it trained.
    start_progress: float = 0.0
    log_tail: List[str] = field(default_factory=list)

    @property
    def result_file(self) -> Path:
        return self.work_dir / 'result.json'

    @property
    def partial_dir(self) -> Optional[Path]:
        """Where the record keeps the unfinished run's state, if recorded."""
        if self.record_file is None:
            return None
        return self.record_file.with_suffix(PARTIAL_SUFFIX)

    def done(self) -> Optional[dict]:
        """The stored result (work dir, else record) when this exact run
        finished before."""
        for path in (self.result_file, self.record_file):
            if path is not None and path.is_file():
                result = json.loads(path.read_text())
                if result.get('key') == self.key:
                    return result
        return None


def _log_dirs(folder: Path) -> List[Path]:
    """The timestamped folders mmengine logs a run's invocations in."""
    return [path for path in folder.iterdir()
            if path.is_dir() and _TIMESTAMP_DIR.fullmatch(path.name)]


def resumable(run: Run) -> bool:
    """Whether ``run.work_dir`` holds a checkpoint (``last_checkpoint``) of a
    run that started with ``run``'s key (``started.json``: the same config,
    initial weights and teacher), from which ``run`` resumes."""
    started = run.work_dir / STARTED_FILE
    pointer = run.work_dir / 'last_checkpoint'
    return (pointer.is_file() and started.is_file()
            and json.loads(started.read_text()).get('key') == run.key
            and Path(pointer.read_text().strip()).is_file())


def prepare_work_dir(run: Run) -> bool:
    """Make ``run.work_dir`` ready for ``run``; True if it resumes there.

    Unless the run is :func:`resumable`, the folder's checkpoints,
    timestamped log folders and last predictions, left by a run of another
    key or by one killed before its first checkpoint, are removed (their
    logs would be read as this run's). Then the record's snapshot of this
    run (:func:`snapshot_partial`: same key), if any, is put in the folder
    to resume from; else this run's key is recorded.

    Returns:
        bool: Whether the run resumes from its last checkpoint.
    """
    work = run.work_dir
    work.mkdir(parents=True, exist_ok=True)
    if resumable(run):
        return True
    for path in _log_dirs(work):
        shutil.rmtree(path)
    for path in work.iterdir():
        if path.name == 'last_checkpoint' or re.fullmatch(
                r'(epoch|iter)_\d+\.pth', path.name) or path.name.startswith(
                    PREDICTIONS_PREFIX + '.'):
            path.unlink()
    if restore_partial(run):
        return True
    started = work / STARTED_FILE
    tmp = started.with_suffix('.tmp')
    tmp.write_text(json.dumps(dict(key=run.key)))
    os.replace(tmp, started)
    return False


def recorded_partial(run: Run) -> Optional[Path]:
    """The record's snapshot of ``run`` (:func:`snapshot_partial`) when it
    is one of this run's key, else None."""
    partial = run.partial_dir
    if partial is None or not (partial / STARTED_FILE).is_file():
        return None
    if json.loads((partial / STARTED_FILE).read_text()).get('key') != run.key:
        return None
    return partial


def snapshot_partial(run: Run) -> Optional[Path]:
    """Keep in the record what ``run`` resumes from on another machine.

    Copies the run's key (``started.json``), its last checkpoint (the one
    ``last_checkpoint`` names), its timestamped log folders and
    ``train.log`` from ``run.work_dir`` into ``run.partial_dir``, which
    replaces the previous snapshot whole (written beside it, then renamed):
    a reader sees one snapshot or the other, never a mix.

    Returns:
        Path, optional: ``run.partial_dir``; None, the previous snapshot
        kept, when the named checkpoint is gone (the training saved the
        next one and removed it meanwhile): the caller tries again later.
    """
    partial = run.partial_dir
    if partial is None:
        raise ValueError(f'{run.name}: a run without a record file has no '
                         'snapshot to keep')
    checkpoint = Path((run.work_dir / 'last_checkpoint').read_text().strip())
    tmp = partial.with_name(partial.name + '.tmp')
    old = partial.with_name(partial.name + '.old')
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(run.work_dir / STARTED_FILE, tmp / STARTED_FILE)
    try:
        shutil.copyfile(checkpoint, tmp / checkpoint.name)
    except FileNotFoundError:
        shutil.rmtree(tmp)
        return None
    (tmp / 'last_checkpoint').write_text(checkpoint.name)
    for path in _log_dirs(run.work_dir):
        shutil.copytree(path, tmp / path.name)
    if (run.work_dir / 'train.log').is_file():
        shutil.copyfile(run.work_dir / 'train.log', tmp / 'train.log')
    if partial.exists():
        os.replace(partial, old)
    os.replace(tmp, partial)
    shutil.rmtree(old, ignore_errors=True)
    return partial


def restore_partial(run: Run) -> bool:
    """Put the record's snapshot of ``run`` (:func:`recorded_partial`) in
    ``run.work_dir``, its ``last_checkpoint`` pointing there, so that the run
    resumes from it. Returns whether there was one."""
    partial = recorded_partial(run)
    if partial is None:
        return False
    name = (partial / 'last_checkpoint').read_text().strip()
    for path in partial.iterdir():
        if path.is_dir():
            shutil.copytree(path, run.work_dir / path.name)
        elif path.name != 'last_checkpoint':
            shutil.copyfile(path, run.work_dir / path.name)
    (run.work_dir / 'last_checkpoint').write_text(
        str((run.work_dir / name).resolve()))
    return True


class TrainingFailed(RuntimeError):
    """A training run of the study exited with an error."""


def train(run: Run) -> dict:
    """Train ``run`` with ``python -m mmdet_eakd.train`` and store its result.

    The training process is this interpreter, in this process's environment
    and working directory, so it imports the same ``mmdet_eakd``. Writes the
    config to ``work_dir/config.py``, streams the log to
    ``work_dir/train.log``, keeps ``run.progress`` (0-1) up to date from the
    iteration counter, and writes ``result.json`` (metrics, wall time, key)
    atomically last, and to ``run.record_file`` when set. The last
    evaluation's detections are kept as
    ``work_dir/predictions.bbox.json`` (for :mod:`.noise`); where they go is
    not part of the run's key. The run keeps its last checkpoint every
    :data:`RESUME_INTERVAL` epochs (not part of the key either), and a run
    killed after one resumes from it (:func:`prepare_work_dir`; mmengine's
    resume restores weights, optimizer, scheduler and epoch, and the data
    order is seeded per epoch, but the augmentation's random state is not
    restored, so a resumed run is not bit-identical to an uninterrupted one).
    With ``run.record_file``, each new checkpoint is also kept in the record
    (:func:`snapshot_partial`), so that the run resumes on another machine;
    the finished run's result replaces that snapshot.

    Returns:
        dict: The result (``metrics``, ``curve``: ``[epoch, AP, AP50,
        AP75]`` (points) per evaluated epoch, ``ea_weight``: the logged EA
        weight's mean over training, or None, ``train_time_s``, ``key``,
        ...).
    """
    resume = prepare_work_dir(run)
    config = run.work_dir / 'config.py'
    dumped = run.config.copy()
    for evaluator in ('val_evaluator', 'test_evaluator'):
        dumped[evaluator]['outfile_prefix'] = str(run.work_dir /
                                                  PREDICTIONS_PREFIX)
    dumped.default_hooks.checkpoint.interval = min(run.epochs,
                                                   RESUME_INTERVAL)
    dumped.dump(config)
    env = dict(os.environ,
               OMP_NUM_THREADS=str(run.threads),
               MKL_NUM_THREADS=str(run.threads))
    cmd = [sys.executable, '-m', 'mmdet_eakd.train', str(config),
           '--work-dir', str(run.work_dir)] + (['--resume'] if resume else [])
    pointer = run.work_dir / 'last_checkpoint'
    kept = None  # the checkpoint the record's snapshot holds
    start = time.time()
    with open(run.work_dir / 'train.log', 'a' if resume else 'w') as log_file, \
            subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True) as proc:
        for line in proc.stdout:
            log_file.write(line)
            run.log_tail = (run.log_tail + [line])[-40:]
            match = _PROGRESS.search(line)
            if match:
                epoch, it, total = map(int, match.groups())
                run.progress = min(1.0, (epoch - 1 + it / total) / run.epochs)
                if resume and not run.start_progress:
                    run.start_progress = (epoch - 1) / run.epochs
                # mmengine names a checkpoint in last_checkpoint once it is
                # saved; the next iteration's line comes after that
                if run.partial_dir is not None and pointer.is_file():
                    current = pointer.read_text()
                    if current != kept:
                        log_file.flush()
                        if snapshot_partial(run) is not None:
                            kept = current
    if proc.returncode != 0:
        raise TrainingFailed(
            f'training {run.name} exited with code {proc.returncode}; log: '
            f'{run.work_dir / "train.log"}\n' + ''.join(run.log_tail[-25:]))
    run.progress = 1.0
    curve = evaluations(run.work_dir)
    result = dict(name=run.name, seed=run.seed, key=run.key,
                  metrics=curve[-1][1],
                  curve=[[epoch] + [round(100 * metrics[k], 2) for k in METRICS]
                         for epoch, metrics in curve],
                  ea_weight=logged_mean(run.work_dir, 'ea_weight'),
                  stats_by_epoch=logged_epoch_means(run.work_dir),
                  train_time_s=round(time.time() - start, 1),
                  resumed=resume, threads=run.threads)
    if run.halves_ann_file is not None:
        result['halves'] = list(half_aps_in_subprocess(
            run.halves_ann_file, run.work_dir / PREDICTIONS_FILE))
    write_json(run.result_file, result)
    if run.record_file is not None:
        write_json(run.record_file, result)
        shutil.rmtree(run.partial_dir, ignore_errors=True)
    return result


@contextlib.contextmanager
def run_lock(run: Run, log: Log = print_line) -> Iterator[None]:
    """Hold ``run.work_dir/.lock`` (an exclusive ``flock``) while the body
    runs: two processes never train one run at once. A process that finds
    the lock held waits for it (and logs that it waits); the lock goes with
    its holder, killed or not."""
    run.work_dir.mkdir(parents=True, exist_ok=True)
    with open(run.work_dir / '.lock', 'w') as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f'[study] {run.name} is being trained by another process; '
                'waiting for it')
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_all(runs: Sequence[Run], jobs: int, log: Log = print_line,
            progress_interval: float = 30.0) -> Dict[str, dict]:
    """Run every unfinished run, ``jobs`` at a time, with progress and ETA.

    Finished runs (same key) are skipped, also one that another process
    (e.g. a second study on the same folder) finished while this one waited
    to start it; a run that another process is training is waited for
    (:func:`run_lock`), not trained twice. A failed run does not stop the
    others; :class:`TrainingFailed` is raised at the end naming every failure.

    Returns:
        dict: ``{run.name: result}`` for every run.
    """
    results: Dict[str, dict] = {}
    todo: List[Run] = []
    for run in runs:
        stored = run.done()
        if stored is not None:
            results[run.name] = stored
        else:
            todo.append(run)
    if len(results):
        log(f'[study] {len(results)} of {len(runs)} runs already done, skipped')
    if not todo:
        return results
    log(f'[study] training {len(todo)} runs, {jobs} at a time, '
        f'{todo[0].threads} thread(s) each')
    for run in todo:
        if resumable(run):
            log(f'[study] {run.name} resumes from its last checkpoint')
        elif recorded_partial(run) is not None:
            log(f'[study] {run.name} resumes from the record\'s snapshot '
                f'{run.partial_dir}')
    failures: List[str] = []
    lock = threading.Lock()
    started = time.time()
    finished = threading.Event()

    def report_progress() -> None:
        while not finished.wait(progress_interval):
            with lock:
                done = sum(run.progress for run in todo)
                trained = done - sum(run.start_progress for run in todo)
            elapsed = time.time() - started
            eta = (f'{elapsed * (len(todo) - done) / trained / 60:.1f} min'
                   if trained > 0.02 else 'estimating')
            log(f'[study] progress {100 * done / len(todo):.0f}% '
                f'({len(results) - (len(runs) - len(todo))}/{len(todo)} runs '
                f'done), elapsed {elapsed / 60:.1f} min, ETA {eta}')

    def work(run: Run) -> None:
        with run_lock(run, log):
            stored = run.done()  # finished meanwhile by another invocation
            if stored is not None:
                with lock:
                    results[run.name] = stored
                run.progress = 1.0
                log(f'[study] {run.name} was finished meanwhile by another '
                    'process (same key), skipped')
                return
            try:
                result = train(run)
            except TrainingFailed as err:
                with lock:
                    failures.append(str(err))
                log(f'[study] FAILED {run.name}: see '
                    f'{run.work_dir / "train.log"}')
                return
        with lock:
            results[run.name] = result
        ap = 100 * result['metrics'][METRICS[0]]
        log(f'[study] done {run.name}: AP {ap:.1f} '
            f'({result["train_time_s"]:.0f} s)')

    reporter = threading.Thread(target=report_progress, daemon=True)
    reporter.start()
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(work, todo))
    finally:
        finished.set()
        reporter.join()
    if failures:
        raise TrainingFailed(f'{len(failures)} run(s) failed:\n\n' +
                             '\n\n'.join(failures))
    return results


def run_key(config_text: str, *files: Path) -> str:
    """Digest of a run's config text and the files it starts from."""
    parts = [config_text.encode()] + [_file_digest(f).encode() for f in files]
    return _sha256(b'\0'.join(parts))


def threads_per_job(jobs: int, cores: Optional[int] = None) -> int:
    """Threads each of ``jobs`` parallel runs gets: ``cores // jobs``, >= 1."""
    if jobs < 1:
        raise ValueError(f'jobs must be >= 1, got {jobs}.')
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, cores // jobs)
