#!/usr/bin/env python
"""End-to-end EA-KD demo on the embedded synthetic data set, on a CPU.

Stages: generate the data set (if absent) -> train a teacher (cached) -> train,
from the same initial weights and seed, a student baseline, a KD student and
an EA-KD student (the distillation code path of the COCO configs, with small
models) -> COCO AP / AP50 / AP75 of all four -> a table printed and written as
Markdown, JSON and PNG under ``--work-dir``.

    python tools/demo.py                 # full demo (see README for its time)
    python tools/demo.py --short         # the same stages, a few iterations
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'configs' / 'synthetic'
METRICS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75')

#: (name, config, is a distillation config)
STUDENTS = (
    ('student', CONFIGS / 'frcnn_tiny_synthetic.py', False),
    ('KD', CONFIGS / 'kd_frcnn_teacher_tiny_synthetic.py', True),
    ('EA-KD', CONFIGS / 'eakd_frcnn_teacher_tiny_synthetic.py', True),
)
TEACHER = CONFIGS / 'frcnn_teacher_synthetic.py'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo',
                        help='where runs, the cached teacher and the results go')
    parser.add_argument('--data-root', default=None,
                        help='synthetic data set folder (default: '
                        'data/synthetic, or data/synthetic_short with --short)')
    parser.add_argument('--short', action='store_true',
                        help='CI mode: tiny data set and one short epoch each')
    parser.add_argument('--teacher-epochs', type=int, default=None)
    parser.add_argument('--student-epochs', type=int, default=None)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    full = dict(teacher_epochs=12, student_epochs=8, num_train=400,
                num_val=100, data_root='data/synthetic')
    short = dict(teacher_epochs=1, student_epochs=1, num_train=16, num_val=8,
                 data_root='data/synthetic_short')
    defaults = short if args.short else full
    for key in ('teacher_epochs', 'student_epochs', 'data_root'):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    for key in ('teacher_epochs', 'student_epochs'):
        if getattr(args, key) < 1:
            parser.error(f'--{key.replace("_", "-")} must be >= 1')
    args.num_train, args.num_val = defaults['num_train'], defaults['num_val']
    return args


def stage(message: str) -> None:
    print(f'\n[demo] {message}', flush=True)


def run_config_text(base: Path, data_root: Path, epochs: int, seed: int,
                    extra: str = '') -> str:
    """Config text: ``base`` on ``data_root`` for ``epochs`` epochs."""
    root = f'{data_root}/'
    ann = f'{root}annotations/instances_val.json'
    milestones = sorted({max(1, round(epochs * 2 / 3)), max(1, epochs - 1)})
    milestones = [m for m in milestones if m < epochs]
    return (f"_base_ = '{base}'\n"
            f"train_dataloader = dict(dataset=dict(data_root='{root}'))\n"
            f"val_dataloader = dict(dataset=dict(data_root='{root}'))\n"
            f"test_dataloader = dict(dataset=dict(data_root='{root}'))\n"
            f"val_evaluator = dict(ann_file='{ann}')\n"
            f"test_evaluator = dict(ann_file='{ann}')\n"
            f'train_cfg = dict(max_epochs={epochs}, val_interval={epochs})\n'
            'param_scheduler = [\n'
            "    dict(type='LinearLR', start_factor=0.01, by_epoch=False, "
            'begin=0, end=100),\n'
            f"    dict(type='MultiStepLR', by_epoch=True, begin=0, "
            f'end={epochs}, milestones={milestones}, gamma=0.1)]\n'
            f'randomness = dict(seed={seed})\n'
            'default_hooks = dict(logger=dict(interval=10), '
            f'checkpoint=dict(interval={epochs}, max_keep_ckpts=1))\n'
            f'{extra}')


def train(name: str, config_text: str, work_dir: Path) -> Dict[str, float]:
    """Train with tools/train.py, stream progress, return final val metrics."""
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / f'{name}.py'
    config.write_text(config_text)
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{os.environ.get('PYTHONPATH', '')}")
    cmd = [sys.executable, str(ROOT / 'tools' / 'train.py'), str(config),
           '--work-dir', str(work_dir)]
    start = time.time()
    log_lines: List[str] = []
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            log_lines.append(line)
            if 'Epoch(train)' in line or 'Epoch(val)' in line:
                print(f'  [{name}] {line.split(" - INFO - ")[-1].strip()[:150]}',
                      flush=True)
    if proc.returncode != 0:
        sys.stdout.write(''.join(log_lines[-60:]))
        raise SystemExit(f'[demo] training {name} failed (exit code '
                         f'{proc.returncode}); full log under {work_dir}')
    metrics = final_metrics(work_dir)
    metrics['train_time_s'] = time.time() - start
    return metrics


def final_metrics(work_dir: Path) -> Dict[str, float]:
    """The last COCO metrics logged under ``work_dir`` (newest run)."""
    runs = sorted(work_dir.glob('*/vis_data/scalars.json'))
    if not runs:
        raise SystemExit(f'[demo] no metrics were logged under {work_dir}')
    records = [json.loads(line) for line in runs[-1].read_text().splitlines()]
    evaluated = [r for r in records if METRICS[0] in r]
    if not evaluated:
        raise SystemExit(f'[demo] {work_dir} holds no COCO evaluation')
    return {key: float(evaluated[-1][key]) for key in METRICS}


def latest_checkpoint(work_dir: Path) -> Path:
    pointer = work_dir / 'last_checkpoint'
    if not pointer.is_file():
        raise SystemExit(f'[demo] no checkpoint was saved under {work_dir}')
    return Path(pointer.read_text().strip())


def write_init_checkpoint(path: Path, seed: int) -> None:
    """Initial student weights shared by the three students (same init)."""
    import torch

    from mmdet_eakd.utils import build_offline_model
    path.parent.mkdir(parents=True, exist_ok=True)
    model = build_offline_model(STUDENTS[0][1], path.parent, seed=seed)
    torch.save({'state_dict': model.state_dict(), 'meta': {'seed': seed}},
               path)


def teacher_key(args: argparse.Namespace, data_manifest: Path) -> str:
    """What the cached teacher depends on."""
    digest = hashlib.sha256()
    for path in (TEACHER, CONFIGS / 'frcnn_tiny_synthetic.py',
                 CONFIGS / '_base_' / 'tiny_faster_rcnn.py',
                 CONFIGS / '_base_' / 'synthetic_data.py', data_manifest):
        digest.update(path.read_bytes())
    digest.update(f'{args.teacher_epochs}/{args.seed}'.encode())
    return digest.hexdigest()


def write_results(rows: List[dict], out_dir: Path, args) -> None:
    """Print the table; write results.md, results.json and results.png."""
    header = '| model | AP | AP50 | AP75 | train time |\n|---|---|---|---|---|\n'
    lines = [
        f"| {r['model']} | {100 * r['coco/bbox_mAP']:.1f} | "
        f"{100 * r['coco/bbox_mAP_50']:.1f} | "
        f"{100 * r['coco/bbox_mAP_75']:.1f} | "
        f"{r['train_time']} |" for r in rows
    ]
    mode = 'short (CI)' if args.short else 'full'
    note = (f'Synthetic data set ({args.num_train} train / {args.num_val} val '
            f'images), {mode} mode: teacher {args.teacher_epochs} epochs, '
            f'students {args.student_epochs} epochs, seed {args.seed}.\n\n')
    table = note + header + '\n'.join(lines) + '\n'
    print('\n' + table)
    (out_dir / 'results.md').write_text(table)
    (out_dir / 'results.json').write_text(json.dumps(
        dict(mode=mode, teacher_epochs=args.teacher_epochs,
             student_epochs=args.student_epochs, seed=args.seed,
             num_train=args.num_train, num_val=args.num_val, results=rows),
        indent=2))

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(METRICS)
    for i, (key, label) in enumerate(zip(METRICS, ('AP', 'AP50', 'AP75'))):
        xs = [j + (i - 1) * width for j in range(len(rows))]
        values = [100 * r[key] for r in rows]
        bars = ax.bar(xs, values, width, label=label)
        ax.bar_label(bars, fmt='%.1f', fontsize=7)
    ax.set_xticks(range(len(rows)), [r['model'] for r in rows])
    ax.set_ylabel('COCO metric (%)')
    ax.set_title(f'EA-KD demo on the synthetic data set ({mode} mode)')
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / 'results.png', dpi=120)
    plt.close(fig)
    print(f'[demo] wrote {out_dir}/results.md, results.json, results.png')


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    out_dir = (ROOT / args.work_dir).resolve()
    data_root = (ROOT / args.data_root).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()

    stage(f'1/4 data set: {data_root}')
    sys.path.insert(0, str(ROOT))
    from mmdet_eakd.datasets import generate_synthetic_coco
    info = generate_synthetic_coco(data_root, num_train=args.num_train,
                                   num_val=args.num_val, seed=args.seed)
    print('  generated' if info['generated'] else '  reused existing set')

    stage(f'2/4 teacher ({args.teacher_epochs} epochs)')
    teacher_dir = out_dir / 'teacher'
    key = teacher_key(args, data_root / 'synthetic_manifest.json')
    cache = teacher_dir / 'teacher.json'
    if cache.is_file() and json.loads(cache.read_text()).get('key') == key \
            and (teacher_dir / 'teacher.pth').is_file():
        cached = json.loads(cache.read_text())['metrics']
        teacher = {key: cached[key] for key in METRICS}
        print(f'  reusing cached teacher {teacher_dir / "teacher.pth"}')
    else:
        teacher = train(
            'teacher',
            run_config_text(TEACHER, data_root, args.teacher_epochs, args.seed),
            teacher_dir / 'run')
        os.replace(latest_checkpoint(teacher_dir / 'run'),
                   teacher_dir / 'teacher.pth')
        cache.write_text(json.dumps(dict(key=key, metrics=teacher), indent=2))

    stage(f'3/4 students ({args.student_epochs} epochs each, same init)')
    init = out_dir / 'student_init.pth'
    write_init_checkpoint(init, args.seed)
    rows = [dict(model='teacher', **teacher)]
    for name, config, distill in STUDENTS:
        extra = f"load_from = '{init}'\n"
        if distill:
            extra += ("model = dict(teacher=dict(checkpoint='"
                      f"{teacher_dir / 'teacher.pth'}'))\n")
        metrics = train(name,
                        run_config_text(config, data_root,
                                        args.student_epochs, args.seed, extra),
                        out_dir / name)
        rows.append(dict(model=name, **metrics))

    stage('4/4 results (COCO bbox metrics on the val split)')
    for row in rows:
        seconds = row.pop('train_time_s', None)
        row['train_time'] = 'cached' if seconds is None else f'{seconds:.0f} s'
    write_results(rows, out_dir, args)
    print(f'[demo] total {time.time() - started:.0f} s')


if __name__ == '__main__':
    main()
