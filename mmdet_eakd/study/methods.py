"""The methods a study compares and the regimes (data, models, schedule) it runs.

Every distillation method of a regime trains the regime's KD config and changes
only the distillation loss's ``type`` (KD or DKD) and ``weight_mode`` (the
paper's protocol: KD and EA-KD share every other setting, and nothing is tuned
for the EA variants alone).
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

#: Repository root (configs/ and tools/ live there).
ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC_CONFIGS = ROOT / 'configs' / 'synthetic'


@dataclass(frozen=True)
class Method:
    """One arm of a study.

    Attributes:
        name (str): Display name, also the run folder name.
        loss_type (str, optional): Registered distillation loss, ``None`` for
            the student trained alone.
        weight_mode (str): ``weight_mode`` of the loss (``'none'`` = plain).
        description (str): One line for the report.
    """
    name: str
    loss_type: Optional[str]
    weight_mode: str
    description: str

    @property
    def distills(self) -> bool:
        return self.loss_type is not None


METHODS: Dict[str, Method] = {m.name: m for m in (
    Method('student', None, 'none', 'student trained alone (baseline)'),
    Method('KD', 'EAKDLoss', 'none', 'plain KD on the RoI logits'),
    Method('EA-KD', 'EAKDLoss', 'ea', 'EA-KD, w = H_T (1 + H_S / H_ub) / 2'),
    Method('EA-KD-base', 'EAKDLoss', 'base', 'EA ablation: w = H_T'),
    Method('EA-KD-interact', 'EAKDLoss', 'interact',
           'EA ablation: w = H_T H_S / H_ub'),
    Method('DKD', 'EADKDLoss', 'none', 'plain DKD (alpha 1, beta 0.25)'),
    Method('EA-DKD', 'EADKDLoss', 'ea', 'EA-DKD'),
)}

#: (method, reference) pairs whose paired difference a report shows, when both
#: methods are in the study. KD's gain over the baseline comes first.
COMPARISONS: Tuple[Tuple[str, str], ...] = (
    ('KD', 'student'),
    ('EA-KD', 'KD'),
    ('EA-KD-base', 'KD'),
    ('EA-KD-interact', 'KD'),
    ('DKD', 'KD'),
    ('EA-DKD', 'KD'),
    ('EA-DKD', 'DKD'),
)


@dataclass(frozen=True)
class Regime:
    """Data, models and schedule of a study.

    Attributes:
        name (str): Regime name.
        teacher_config (Path): Config the teacher is trained with.
        student_config (Path): Plain student config (the baseline).
        kd_config (Path): The student's distillation config; every
            distillation method overrides only its loss type and weight mode.
        teacher_epochs (int): Teacher schedule.
        student_epochs (int): Schedule of every student.
        num_train (int): Training images of the synthetic set.
        num_val (int): Validation images (COCO AP is measured on them).
        data_root (str): Where the synthetic set is generated, relative to the
            repository root unless absolute.
    """
    name: str
    teacher_config: Path
    student_config: Path
    kd_config: Path
    teacher_epochs: int
    student_epochs: int
    num_train: int
    num_val: int
    data_root: str


def _frcnn(name: str, **kwargs) -> Regime:
    return Regime(
        name=name,
        teacher_config=SYNTHETIC_CONFIGS / 'frcnn_teacher_synthetic.py',
        student_config=SYNTHETIC_CONFIGS / 'frcnn_tiny_synthetic.py',
        kd_config=SYNTHETIC_CONFIGS / 'kd_frcnn_teacher_tiny_synthetic.py',
        **kwargs)


REGIMES: Dict[str, Regime] = {
    # What the README's study and the demo run (see README, "Evidence").
    'frcnn': _frcnn('frcnn', teacher_epochs=12, student_epochs=4,
                    num_train=400, num_val=300, data_root='data/synthetic'),
    # CI: the same code path with a tiny data set and one short epoch.
    'frcnn-short': _frcnn('frcnn-short', teacher_epochs=1, student_epochs=1,
                          num_train=16, num_val=8,
                          data_root='data/synthetic_short'),
}


def resolve_methods(names: Sequence[str]) -> Tuple[Method, ...]:
    """The methods named, in the given order, with a clear error otherwise.

    Args:
        names (Sequence[str]): Method names (keys of :data:`METHODS`).

    Returns:
        tuple[Method]: The methods.
    """
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f'unknown method(s) {unknown}; choose from '
                         f'{list(METHODS)}.')
    if len(set(names)) != len(names):
        raise ValueError(f'methods are listed twice: {list(names)}.')
    if not names:
        raise ValueError('a study needs at least one method.')
    return tuple(METHODS[n] for n in names)
