"""The report of a study: Markdown, JSON and a figure.

All metrics are COCO box AP / AP50 / AP75 on the validation split, in points
(x 100). Differences are paired per seed (see :mod:`.stats`).
"""
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .methods import COMPARISONS, METHODS, Regime
from .runner import METRICS
from .stats import (MAX_SEEDS, half_split_noise_std, paired_difference,
                    seeds_for_halfwidth, std_interval, summarize,
                    t_interval_halfwidth)

#: The half-width (AP points) of the paired interval a study is sized for.
TARGET_HALFWIDTH = 0.3

LABELS = dict(zip(METRICS, ('AP', 'AP50', 'AP75')))


@dataclass
class StudyReport:
    """A study's numbers (``data``, JSON-ready) and their Markdown."""
    data: dict
    markdown: str


def _points(results: Dict[str, dict], method: str, seeds: Sequence[int],
            metric: str) -> List[float]:
    return [100 * results[f'{method}/seed{s}']['metrics'][metric]
            for s in seeds]


def _fmt_ci(diff: dict) -> str:
    if diff['n'] < 2:
        return f"{diff['mean']:+.2f}"
    return (f"{diff['mean']:+.2f} [{diff['ci_low']:+.2f}, "
            f"{diff['ci_high']:+.2f}]")


def _seeds_for_target(std: float, confidence: float) -> Optional[int]:
    """Seeds for a +-:data:`TARGET_HALFWIDTH` AP interval at ``std``; None
    when even :data:`~.stats.MAX_SEEDS` seeds are too few (any other bad
    input still raises)."""
    if t_interval_halfwidth(std, MAX_SEEDS, confidence) > TARGET_HALFWIDTH:
        return None
    return seeds_for_halfwidth(std, TARGET_HALFWIDTH, confidence)


def build_report(regime: Regime, methods: Sequence[str], seeds: Sequence[int],
                 results: Dict[str, dict], teacher_metrics: Optional[dict],
                 wall_time_s: float, jobs: int, threads: int,
                 title: Optional[str] = None,
                 confidence: float = 0.95,
                 halves: Optional[Dict[str, Sequence[float]]] = None,
                 teacher_curve: Optional[List[List[float]]] = None
                 ) -> StudyReport:
    """Summaries per method and paired differences, as data and Markdown.

    Args:
        regime (Regime): The study's regime.
        methods (Sequence[str]): Method names, in display order.
        seeds (Sequence[int]): The seeds (each method has one run per seed).
        results (dict): ``{'{method}/seed{s}': result}`` from the runner.
        teacher_metrics (dict, optional): The teacher's final metrics.
        wall_time_s (float): Wall time of the study (all invocations).
        jobs (int): Parallel trainings.
        threads (int): Threads per training.
        title (str, optional): Heading of the Markdown.
        confidence (float): Level of the paired intervals.
        halves (dict, optional): ``{'{method}/seed{s}': (AP on half A, AP on
            half B)}`` (see :func:`.noise.half_aps`): adds the evaluation
            noise of each method's AP and of each paired difference.
        teacher_curve (list, optional): The teacher's ``[epoch, AP, AP50,
            AP75]`` per evaluated epoch.

    Returns:
        StudyReport: ``data`` holds per-seed values, summaries, paired
        differences for every metric (each with the seeds an interval of
        +-``TARGET_HALFWIDTH`` AP needs at its sd), the learning curves and
        the evaluation noise.
    """
    per_seed = {m: {LABELS[k]: _points(results, m, seeds, k) for k in METRICS}
                for m in methods}
    summaries = {m: {label: summarize(values).as_dict()
                     for label, values in per_seed[m].items()}
                 for m in methods}
    comparisons = []
    for method, reference in COMPARISONS:
        if method in methods and reference in methods:
            comp = dict(
                method=method, reference=reference,
                **{label: paired_difference(per_seed[method][label],
                                            per_seed[reference][label],
                                            confidence).as_dict()
                   for label in LABELS.values()})
            std = comp['AP']['std']
            comp['seeds_for_target'] = comp['std_interval'] = None
            comp['seeds_for_target_interval'] = None
            if len(seeds) > 1:
                comp['seeds_for_target'] = _seeds_for_target(std, confidence)
                comp['std_interval'] = list(
                    std_interval(std, len(seeds), confidence))
                comp['seeds_for_target_interval'] = [
                    _seeds_for_target(limit, confidence)
                    for limit in comp['std_interval']]
            if halves is not None:
                # per seed: (ΔAP on half A, ΔAP on half B); a list, not a
                # generator, so that each row reads its own seed
                comp['eval_noise_std'] = half_split_noise_std(*zip(*[
                    [halves[f'{method}/seed{s}'][h] -
                     halves[f'{reference}/seed{s}'][h] for h in (0, 1)]
                    for s in seeds]))
            comparisons.append(comp)
    noise = None
    if halves is not None:
        noise = {
            m: half_split_noise_std(*zip(*[halves[f'{m}/seed{s}']
                                           for s in seeds]))
            for m in methods
        }
    curves = {m: [results[f'{m}/seed{s}'].get('curve') for s in seeds]
              for m in methods}
    over_training = {m: _over_training(
        [results[f'{m}/seed{s}'].get('stats_by_epoch') for s in seeds])
        for m in methods}
    train_time = sum(r['train_time_s'] for r in results.values())
    teacher = ({LABELS[k]: 100 * v for k, v in teacher_metrics.items()}
               if teacher_metrics else None)
    data = dict(
        regime=dict(name=regime.name, teacher_epochs=regime.teacher_epochs,
                    student_epochs=regime.student_epochs,
                    num_train=regime.num_train, num_val=regime.num_val,
                    teacher_config=Path(regime.teacher_config).name,
                    student_config=Path(regime.student_config).name,
                    kd_config=Path(regime.kd_config).name),
        methods={m: METHODS[m].description for m in methods},
        seeds=list(seeds), teacher=teacher, per_seed=per_seed,
        summary=summaries, comparisons=comparisons,
        target_halfwidth=TARGET_HALFWIDTH, eval_noise_std=noise,
        curves=curves, teacher_curve=teacher_curve,
        over_training={m: v for m, v in over_training.items() if v},
        interval=f'two-sided Student-t, {int(100 * confidence)}%, over the '
                 'per-seed paired differences',
        wall_time_s=round(wall_time_s, 1),
        total_train_time_s=round(train_time, 1), jobs=jobs,
        threads_per_job=threads)
    return StudyReport(data=data, markdown=_markdown(data, title))


def _over_training(stats: Sequence[Optional[Dict[str, List[float]]]]
                   ) -> Dict[str, Dict[str, float]]:
    """The logged distillation statistics of one method's runs at the start,
    middle and end of training and over all of it.

    Args:
        stats (Sequence[dict | None]): Per seed, the result's
            ``stats_by_epoch`` (``{name: [mean of epoch 1, 2, ...]}``), or
            None for a run that logged none (a student) or predates them.

    Returns:
        dict: ``{name: {'first': ..., 'middle': ..., 'last': ..., 'mean':
        ..., 'epochs': [first, middle, last]}}``, each value the mean over
        the seeds that logged ``name`` for the whole schedule (``mean``: of
        the epoch means); empty when no seed logged any.
    """
    runs = [run for run in stats if run]
    names = sorted({name for run in runs for name in run})
    table: Dict[str, Dict[str, float]] = {}
    for name in names:
        series = [run[name] for run in runs if name in run]
        length = len(series[0])
        if any(len(values) != length for values in series):
            raise ValueError(
                f'the runs logged {name} for different numbers of epochs '
                f'({sorted({len(v) for v in series})}); a study compares '
                'runs of one schedule.')
        picks = (0, (length - 1) // 2, length - 1)
        row = {key: sum(values[i] for values in series) / len(series)
               for key, i in zip(('first', 'middle', 'last'), picks)}
        row['mean'] = sum(sum(values) / length
                          for values in series) / len(series)
        row['epochs'] = [i + 1 for i in picks]
        row['seeds'] = len(series)
        table[name] = row
    return table


def _over_training_lines(data: dict) -> List[str]:
    """The distilling methods' logged statistics (EA weights, overall and
    of the foreground / background samples, entropies, KD loss) at the
    first, middle and last epoch and over training."""
    tables = data.get('over_training') or {}
    if not tables:
        return []
    lines = ['', 'Logged distillation statistics over training (each the '
             'mean over seeds of the epoch means; `ea_weight_fg` / `_bg`: '
             'the weight of the foreground / background samples):', '',
             '| method | statistic | first epoch | middle | last epoch | '
             'mean over training |', '|---|---|---|---|---|---|']
    for method, table in tables.items():
        for name, row in table.items():
            first, middle, last = row['epochs']
            lines.append(
                f"| {method} | {name} | {row['first']:.4g} (ep {first}) | "
                f"{row['middle']:.4g} (ep {middle}) | {row['last']:.4g} "
                f"(ep {last}) | {row['mean']:.4g} |")
    return lines


def _markdown(data: dict, title: Optional[str]) -> str:
    regime, seeds = data['regime'], data['seeds']
    lines = [f'## {title or "EA-KD study: " + regime["name"]}', '',
             f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), paired: per "
             'seed every method starts from the same initial weights, sees '
             'the same data order and uses the same teacher. COCO box metrics '
             f"on {regime['num_val']} validation images "
             f"({regime['num_train']} training images, students "
             f"{regime['student_epochs']} epochs, teacher "
             f"{regime['teacher_epochs']} epochs). Mean ± sample std over "
             'seeds.', '']
    lines += ['| method | AP | AP50 | AP75 |', '|---|---|---|---|']
    if data['teacher']:
        lines.append('| teacher | ' + ' | '.join(
            f"{data['teacher'][label]:.1f}" for label in LABELS.values()) +
            ' |')
    for method, summary in data['summary'].items():
        lines.append(f'| {method} | ' + ' | '.join(
            f"{summary[label]['mean']:.2f} ± {summary[label]['std']:.2f}"
            for label in LABELS.values()) + ' |')
    if data['comparisons']:
        lines += ['', f"Paired differences (mean, {data['interval']}); "
                  'wins / losses: seeds where the first method scores '
                  'higher / lower AP.', '',
                  '| comparison | ΔAP [95% CI] | ΔAP50 [95% CI] | '
                  'ΔAP75 [95% CI] | wins / losses (AP) | AP verdict |',
                  '|---|---|---|---|---|---|']
        for comp in data['comparisons']:
            ap = comp['AP']
            verdict = dict(zip(('a > b', 'a < b', 'not resolved'),
                               (f"{comp['method']} better",
                                f"{comp['reference']} better",
                                'not resolved (CI contains 0)')))[
                                    ap['verdict']]
            lines.append(
                f"| {comp['method']} − {comp['reference']} | " +
                ' | '.join(_fmt_ci(comp[label]) for label in LABELS.values())
                + f" | {ap['wins']} / {ap['losses']} | {verdict} |")
        lines += _power_lines(data)
    lines += ['', 'AP per seed:', '',
              '| seed | ' + ' | '.join(data['per_seed']) + ' |',
              '|---|' + '---|' * len(data['per_seed'])]
    for i, seed in enumerate(seeds):
        lines.append(f'| {seed} | ' + ' | '.join(
            f"{values['AP'][i]:.1f}" for values in data['per_seed'].values())
            + ' |')
    lines += _curve_lines(data)
    lines += _over_training_lines(data)
    lines += ['', f"Wall time {data['wall_time_s'] / 60:.1f} min over all "
              f"invocations ({data['jobs']} trainings in parallel, "
              f"{data['threads_per_job']} thread(s) each; training time "
              f"summed over runs {data['total_train_time_s'] / 60:.1f} min)."]
    return '\n'.join(lines) + '\n'


def _count(seeds: Optional[int]) -> str:
    """A seed count of the power table (None: beyond the search limit)."""
    return f'>{MAX_SEEDS}' if seeds is None else str(seeds)


def _power_lines(data: dict) -> List[str]:
    """The paired sd of each comparison, the seeds its interval needs for
    +-``target_halfwidth`` AP, and the evaluation noise in it."""
    comps = [c for c in data['comparisons'] if c['AP']['n'] > 1]
    if not comps:
        return []
    target = data['target_halfwidth']
    noise = data.get('eval_noise_std') is not None
    lines = ['', f'Power: the sd of the per-seed paired ΔAP, and the seeds a '
             f'95% interval of ±{target} AP needs at that sd; in brackets '
             'the 95% chi-square interval of the sd and the seeds at its '
             'limits (an sd from few seeds fixes the count only roughly)' +
             ('; the evaluation noise in ΔAP (its sd from the AP on two '
              'random halves of the validation set) and its share of the '
              'paired variance' if noise else '') + '.', '',
             '| comparison | sd of ΔAP | seeds for ±' + f'{target} |' +
             (' eval-noise sd of ΔAP | share of variance |' if noise else ''),
             '|---|---|---|' + ('---|---|' if noise else '')]
    for comp in comps:
        std = comp['AP']['std']
        low, high = comp['std_interval']
        seeds = [_count(n) for n in (comp['seeds_for_target'],
                                     *comp['seeds_for_target_interval'])]
        row = (f"| {comp['method']} − {comp['reference']} | {std:.2f} "
               f"[{low:.2f}, {high:.2f}] | {seeds[0]} [{seeds[1]}, "
               f"{seeds[2]}] |")
        if noise:
            share = comp['eval_noise_std']**2 / std**2 if std > 0 else math.nan
            row += f" {comp['eval_noise_std']:.2f} | {100 * share:.0f}% |"
        lines.append(row)
    if noise:
        lines += ['', 'Evaluation noise of one run\'s AP (sd): ' + ', '.join(
            f'{m} {v:.2f}' for m, v in data['eval_noise_std'].items()) + '.']
    return lines


def _curve_lines(data: dict) -> List[str]:
    """AP per evaluated epoch (each method's mean over seeds, then each
    seed's), when runs were evaluated more than once, and the teacher's
    curve."""
    rows: Dict[str, Dict[int, float]] = {}
    teacher = data.get('teacher_curve')
    if teacher and len(teacher) > 1:
        rows['teacher'] = {int(e): ap for e, ap, *_ in teacher}
    for method, curves in data.get('curves', {}).items():
        if not curves or any(not c or len(c) < 2 for c in curves):
            continue
        epochs = [int(point[0]) for point in curves[0]]
        rows[f'{method} ({len(curves)} seeds)'] = {
            epoch: sum(c[i][1] for c in curves) / len(curves)
            for i, epoch in enumerate(epochs)
        }
        if len(curves) > 1:
            for seed, curve in zip(data['seeds'], curves):
                rows[f'{method}, seed {seed}'] = {
                    int(point[0]): point[1] for point in curve}
    if not rows:
        return []
    epochs = sorted({e for row in rows.values() for e in row})
    lines = ['', 'AP per evaluated epoch (each method: the mean over seeds, '
             'then each seed):', '',
             '| run | ' + ' | '.join(f'ep {e}' for e in epochs) + ' |',
             '|---|' + '---|' * len(epochs)]
    for name, row in rows.items():
        lines.append(f'| {name} | ' + ' | '.join(
            f'{row[e]:.1f}' if e in row else '' for e in epochs) + ' |')
    return lines


def _figure(data: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    methods = list(data['per_seed'])
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, 4.2), gridspec_kw=dict(width_ratios=[1.2, 1]))
    xs = range(len(methods))
    for i, seed in enumerate(data['seeds']):
        left.plot(xs, [data['per_seed'][m]['AP'][i] for m in methods],
                  color='0.6', lw=0.8, marker='.', zorder=1,
                  label='one seed (paired)' if i == 0 else None)
    means = [data['summary'][m]['AP']['mean'] for m in methods]
    stds = [data['summary'][m]['AP']['std'] for m in methods]
    left.errorbar(xs, means, yerr=stds, fmt='o', color='C3', capsize=5,
                  lw=2, zorder=2, label='mean ± std')
    teacher = (f", teacher {data['teacher']['AP']:.1f}" if data['teacher']
               else '')
    left.set_xticks(list(xs), methods, rotation=20)
    left.set_ylabel('COCO AP (val)')
    left.set_title(f"AP per method, {len(data['seeds'])} seeds{teacher}")
    left.legend(fontsize=8)

    comps = data['comparisons']
    for j, comp in enumerate(comps):
        ap = comp['AP']
        diffs = [a - b for a, b in zip(data['per_seed'][comp['method']]['AP'],
                                       data['per_seed'][comp['reference']]['AP'])]
        right.scatter(diffs, [j] * len(diffs), color='0.6', s=12, zorder=1)
        if ap['n'] > 1:
            right.errorbar(ap['mean'], j, xerr=[[ap['mean'] - ap['ci_low']],
                                                [ap['ci_high'] - ap['mean']]],
                           fmt='o', color='C3', capsize=5, lw=2, zorder=2)
        else:
            right.plot(ap['mean'], j, 'o', color='C3')
    right.axvline(0, color='k', lw=0.8)
    right.set_yticks(range(len(comps)),
                     [f"{c['method']} − {c['reference']}" for c in comps])
    right.invert_yaxis()
    right.set_xlabel('paired ΔAP (points); mean with 95% t-interval')
    right.set_title('paired differences per seed')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _json_ready(value):
    """``value`` with every float ``nan`` replaced by ``None`` (strict JSON)."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_report(report: StudyReport, out_dir: Path) -> None:
    """Write ``study.md``, ``study.json`` and ``study.png`` to ``out_dir``."""
    out_dir = Path(out_dir)
    (out_dir / 'study.md').write_text(report.markdown)
    (out_dir / 'study.json').write_text(
        json.dumps(_json_ready(report.data), indent=2, allow_nan=False))
    _figure(report.data, out_dir / 'study.png')
