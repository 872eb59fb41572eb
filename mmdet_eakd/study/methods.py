"""The methods a study compares and the regimes (data, models, schedule) it runs.

Every distillation method of a regime trains the regime's KD config and changes
only the distillation loss's ``type`` (KD or DKD, in the regime's classifier
family: softmax for RoI heads, sigmoid for dense heads), its ``weight_mode``
and, for the entropy-temperature arms, ``entropy_temperature`` (the paper's
protocol: KD and EA-KD share every other setting, and nothing is tuned for
the EA variants alone).
"""
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

from ..losses import LOSS_TYPES
from ..scope import CONFIG_PREFIX

#: Name prefix of the shipped synthetic configs (see :mod:`mmdet_eakd.scope`).
SYNTHETIC_CONFIGS = f'{CONFIG_PREFIX}synthetic/'


@dataclass(frozen=True)
class Method:
    """One arm of a study.

    Attributes:
        name (str): Display name, also the run folder name.
        loss_type (str, optional): Registered (softmax) distillation loss,
            ``None`` for the student trained alone; a sigmoid regime uses its
            sigmoid counterpart (:data:`LOSS_TYPES`).
        weight_mode (str): ``weight_mode`` of the loss (``'none'`` = plain).
        description (str): One line for the report.
        entropy_temperature (float, optional): ``T'`` of the loss; None keeps
            the KD config's (the family's default).
        distill_locations (str, optional): The dense distiller's
            ``distill_locations`` (sigmoid regimes only); None keeps the KD
            config's.
        loss_weight (float, optional): ``loss_weight`` of the loss; None
            keeps the KD config's.
    """
    name: str
    loss_type: Optional[str]
    weight_mode: str
    description: str
    entropy_temperature: Optional[float] = None
    distill_locations: Optional[str] = None
    loss_weight: Optional[float] = None

    @property
    def distills(self) -> bool:
        return self.loss_type is not None


METHODS: Dict[str, Method] = {m.name: m for m in (
    Method('student', None, 'none', 'student trained alone (baseline)'),
    Method('KD', 'EAKDLoss', 'none', 'plain KD'),
    Method('EA-KD', 'EAKDLoss', 'ea', 'EA-KD, w = H_T (1 + H_S / H_ub) / 2'),
    Method('EA-KD-T1', 'EAKDLoss', 'ea', "EA-KD with T' = 1", 1.0),
    Method('EA-KD-T3', 'EAKDLoss', 'ea', "EA-KD with T' = 3", 3.0),
    Method('KD-pos', 'EAKDLoss', 'none',
           'plain KD on positive locations only (dense heads)',
           distill_locations='positives'),
    Method('KD-x0.1', 'EAKDLoss', 'none',
           "plain KD with loss_weight 0.1 (about EA-KD's loss scale on dense "
           'heads)', loss_weight=0.1),
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
    ('EA-KD', 'student'),
    ('EA-KD', 'KD'),
    ('EA-KD-T1', 'KD'),
    ('EA-KD-T3', 'KD'),
    ('KD-pos', 'KD'),
    ('EA-KD', 'KD-pos'),
    ('EA-KD', 'KD-x0.1'),
    ('EA-KD', 'EA-KD-T3'),
    ('EA-KD-base', 'KD'),
    ('EA-KD-interact', 'KD'),
    ('DKD', 'KD'),
    ('EA-DKD', 'KD'),
    ('EA-DKD', 'DKD'),
)


@dataclass(frozen=True)
class Regime:
    """Data, models and schedule of a study.

    The configs are named as :func:`mmdet_eakd.scope.config_path` reads them
    (``mmdet_eakd::configs/...`` for the shipped ones, or a file path).

    Attributes:
        name (str): Regime name.
        teacher_config (str): Config the teacher is trained with.
        student_config (str): Plain student config (the baseline).
        kd_config (str): The student's distillation config; every
            distillation method overrides only its loss type and weight mode.
        teacher_epochs (int): Teacher schedule.
        student_epochs (int): Schedule of every student.
        num_train (int): Training images of the synthetic set.
        num_val (int): Validation images (COCO AP is measured on them).
        data_root (str): Where the synthetic set is generated, relative to the
            current directory unless absolute.
        methods (tuple[str]): What ``tools/study.py`` runs by default.
        classifier (str): ``'softmax'`` (RoI heads) or ``'sigmoid'`` (dense
            heads): which losses the methods use (:data:`LOSS_TYPES`).
        test_score_thr (float, optional): Box score threshold of the
            evaluation of every run (teacher included); None keeps the
            configs'.
    """
    name: str
    teacher_config: str
    student_config: str
    kd_config: str
    teacher_epochs: int
    student_epochs: int
    num_train: int
    num_val: int
    data_root: str
    methods: Tuple[str, ...]
    classifier: str = 'softmax'
    test_score_thr: Optional[float] = None

    def model_overrides(self) -> Dict[str, Any]:
        """What every run (teacher included) changes in ``model``."""
        if self.test_score_thr is None:
            return {}
        return dict(test_cfg=dict(score_thr=self.test_score_thr))

    def supports(self, method: Method) -> bool:
        """Whether ``method`` has a loss for this regime's classifiers
        (and, for a location option, a dense distiller)."""
        if method.distill_locations is not None and (self.classifier !=
                                                     'sigmoid'):
            return False
        return (not method.distills
                or method.loss_type in LOSS_TYPES[self.classifier])

    def loss_type(self, method: Method) -> str:
        """The registered loss ``method`` trains with in this regime."""
        return LOSS_TYPES[self.classifier][method.loss_type]


def _synthetic(name: str, family: str, **kwargs) -> Regime:
    """A regime on the shipped synthetic configs of ``family``:
    ``{family}_teacher_synthetic.py``, ``{family}_tiny_synthetic.py`` and
    ``kd_{family}_teacher_tiny_synthetic.py``."""
    return Regime(
        name=name,
        teacher_config=f'{SYNTHETIC_CONFIGS}{family}_teacher_synthetic.py',
        student_config=f'{SYNTHETIC_CONFIGS}{family}_tiny_synthetic.py',
        kd_config=f'{SYNTHETIC_CONFIGS}kd_{family}_teacher_tiny_synthetic.py',
        **kwargs)


def _frcnn(name: str, **kwargs) -> Regime:
    return _synthetic(
        name, 'frcnn',
        methods=('student', 'KD', 'EA-KD', 'EA-KD-base', 'EA-KD-interact',
                 'DKD', 'EA-DKD'),
        **kwargs)


def _gfl(name: str, **kwargs) -> Regime:
    return _synthetic(
        name, 'gfl',
        methods=('student', 'KD', 'EA-KD', 'EA-KD-T3', 'KD-pos', 'KD-x0.1'),
        classifier='sigmoid',
        **kwargs)


def _rtmdet(name: str, **kwargs) -> Regime:
    return _synthetic(name, 'rtmdet', methods=('student', 'KD', 'EA-KD'),
                      classifier='sigmoid', **kwargs)


REGIMES: Dict[str, Regime] = {
    # What the README's study and the demo run (see README, "Evidence").
    'frcnn': _frcnn('frcnn', teacher_epochs=12, student_epochs=4,
                    num_train=400, num_val=300, data_root='data/synthetic'),
    # CI: the same code path with a tiny data set and one short epoch.
    'frcnn-short': _frcnn('frcnn-short', teacher_epochs=1, student_epochs=1,
                          num_train=16, num_val=8,
                          data_root='data/synthetic_short'),
    # Dense heads (sigmoid EA): see README, "Dense detectors".
    'gfl': _gfl('gfl', teacher_epochs=24, student_epochs=6, num_train=400,
                num_val=300, data_root='data/synthetic'),
    # After one epoch a GFL scores below the default 0.05 threshold (the
    # quality focal loss starts from the 0.01 prior): keep every box, so that
    # COCO AP is defined.
    'gfl-short': _gfl('gfl-short', teacher_epochs=1, student_epochs=1,
                      num_train=16, num_val=8,
                      data_root='data/synthetic_short',
                      test_score_thr=0.0),
    # RTMDet (sigmoid EA, EMA, pipeline switch at epoch 11 of the synthetic
    # configs' 12): see README, "RTMDet". Not piloted yet: the schedule is
    # the synthetic configs' own, not chosen with student and KD pilots.
    'rtmdet': _rtmdet('rtmdet', teacher_epochs=12, student_epochs=12,
                      num_train=400, num_val=300, data_root='data/synthetic'),
    # CI: the same code path with a tiny data set and one short epoch (no
    # pipeline switch); every box kept, as gfl-short (QFL starts at 0.01).
    'rtmdet-short': _rtmdet('rtmdet-short', teacher_epochs=1,
                            student_epochs=1, num_train=16, num_val=8,
                            data_root='data/synthetic_short',
                            test_score_thr=0.0),
}


def resolve_methods(names: Sequence[str],
                    regime: Regime) -> Tuple[Method, ...]:
    """The methods named, in the given order, with a clear error otherwise.

    Args:
        names (Sequence[str]): Method names (keys of :data:`METHODS`).
        regime (Regime): The regime they run in (each must have a loss for
            its classifiers).

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
    unsupported = [n for n in names if not regime.supports(METHODS[n])]
    if unsupported:
        raise ValueError(
            f'method(s) {unsupported} have no {regime.classifier} loss (or '
            f'options of another head family), so regime {regime.name!r} '
            'cannot run them; it runs '
            f'{[n for n, m in METHODS.items() if regime.supports(m)]}.')
    return tuple(METHODS[n] for n in names)
