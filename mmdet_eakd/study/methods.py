"""The methods a study compares and the regimes (data, models, schedule) it runs.

Every distillation method of a regime trains the regime's KD config and changes
only the distillation loss's ``type`` (KD or DKD, in the regime's classifier
family: softmax for RoI heads, sigmoid for dense heads), its ``weight_mode``
and, for the entropy-temperature arms, ``entropy_temperature`` (the paper's
protocol: KD and EA-KD share every other setting, and nothing is tuned for
the EA variants alone). The feature arms (PKD, EA-PKD) replace the loss by
named terms: a PKD term on the FPN levels (``EAPKDLoss`` at
:data:`PKD_LOSS_WEIGHT`, with the regime's connector), alone or beside the
logit term. The localization arms (LD, EA-LD) add a box-distribution term
(``EALDLoss`` with mmdet's LD settings, :data:`LD_TERM`) on regimes whose
heads predict box-edge distributions (GFL).
"""
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

from ..losses import LOSS_TYPES, SIGMOID, SOFTMAX, ClassifierKind
from ..scope import CONFIG_PREFIX

#: Name prefix of the shipped synthetic configs (see :mod:`mmdet_eakd.scope`).
SYNTHETIC_CONFIGS = f'{CONFIG_PREFIX}synthetic/'
#: ``loss_weight`` of the feature arms' PKD term (mmrazor's PKD configs).
PKD_LOSS_WEIGHT = 6.0
#: The localization arms' box term: the settings of mmdet's
#: ``ld_r18-gflv1-r101_fpn_1x_coco.py`` (``T = 10``, weight 0.25); its
#: ``weight_mode`` is the arm's.
LD_TERM: Dict[str, Any] = dict(type='EALDLoss', temperature=10.0,
                               loss_weight=0.25)


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
        distill_rois (str, optional): The RoI distiller's ``distill_rois``
            (softmax regimes only); None keeps the KD config's.
        loss_weight_from (str, optional): Another method whose runs measure
            this method's ``loss_weight``: the mean over its seeds of the
            EA weight it logged over training (a control that gives plain
            KD EA-KD's loss scale without its per-sample weighting). Its runs
            train after those of that method.
        feature_weight_mode (str, optional): ``weight_mode`` of a PKD term
            on the FPN levels (``EAPKDLoss``, per-image EA weights) that the
            arm adds (beside the logit loss, or alone when ``loss_type`` is
            None); None: no feature term.
        box_weight_mode (str, optional): ``weight_mode`` of a
            box-distribution term (:data:`LD_TERM`, on the positive
            locations, as mmdet's ``LDHead``) that the arm adds (beside the
            logit loss, or alone when ``loss_type`` is None); None: no box
            term. Only for regimes with ``box_distributions``.
    """
    name: str
    loss_type: Optional[str]
    weight_mode: str
    description: str
    entropy_temperature: Optional[float] = None
    distill_locations: Optional[str] = None
    loss_weight: Optional[float] = None
    distill_rois: Optional[str] = None
    loss_weight_from: Optional[str] = None
    feature_weight_mode: Optional[str] = None
    box_weight_mode: Optional[str] = None

    @property
    def distills(self) -> bool:
        return (self.loss_type is not None
                or self.feature_weight_mode is not None
                or self.box_weight_mode is not None)


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
    Method('KD-fg', 'EAKDLoss', 'none',
           'plain KD on foreground RoIs only (RoI heads; the twin of KD-pos)',
           distill_rois='foreground'),
    Method('KD-xEA', 'EAKDLoss', 'none',
           "plain KD with loss_weight = EA-KD's mean EA weight (measured "
           'from the EA-KD runs): its scale without its weighting',
           loss_weight_from='EA-KD'),
    Method('EA-KD-base', 'EAKDLoss', 'base', 'EA ablation: w = H_T'),
    Method('EA-KD-interact', 'EAKDLoss', 'interact',
           'EA ablation: w = H_T H_S / H_ub'),
    Method('DKD', 'EADKDLoss', 'none', 'plain DKD (alpha 1, beta 0.25)'),
    Method('EA-DKD', 'EADKDLoss', 'ea', 'EA-DKD'),
    Method('PKD', None, 'none', 'PKD on the FPN levels only',
           feature_weight_mode='none'),
    Method('EA-PKD', None, 'none',
           'EA-PKD: PKD weighted per image by the EA weight of its samples',
           feature_weight_mode='ea'),
    Method('EA-KD+EA-PKD', 'EAKDLoss', 'ea',
           'EA-KD on the logits and EA-PKD on the FPN levels',
           feature_weight_mode='ea'),
    Method('LD', None, 'none',
           "LD on the box-edge distributions only (mmdet's LD settings)",
           box_weight_mode='none'),
    Method('EA-LD', None, 'none',
           'EA-LD: LD weighted per location by the edge-distribution EA '
           'weight', box_weight_mode='ea'),
    Method('KD+LD', 'EAKDLoss', 'none', 'plain KD and LD',
           box_weight_mode='none'),
    Method('EA-KD+LD', 'EAKDLoss', 'ea', 'EA-KD and plain LD',
           box_weight_mode='none'),
    Method('EA-KD+EA-LD', 'EAKDLoss', 'ea', 'EA-KD and EA-LD',
           box_weight_mode='ea'),
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
    ('KD-fg', 'KD'),
    ('EA-KD', 'KD-fg'),
    ('KD-xEA', 'KD'),
    ('EA-KD', 'KD-xEA'),
    ('EA-KD', 'EA-KD-T3'),
    ('EA-KD-base', 'KD'),
    ('EA-KD-interact', 'KD'),
    ('DKD', 'KD'),
    ('EA-DKD', 'KD'),
    ('EA-DKD', 'DKD'),
    ('PKD', 'student'),
    ('EA-PKD', 'PKD'),
    ('EA-KD+EA-PKD', 'EA-KD'),
    ('LD', 'student'),
    ('EA-LD', 'LD'),
    ('KD+LD', 'KD'),
    ('EA-KD+LD', 'KD+LD'),
    ('EA-KD+EA-LD', 'KD+LD'),
    ('EA-KD+EA-LD', 'EA-KD+LD'),
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
        classifier (ClassifierKind): :data:`~mmdet_eakd.losses.SOFTMAX`
            (RoI heads) or :data:`~mmdet_eakd.losses.SIGMOID` (dense heads):
            which losses the methods use (:data:`LOSS_TYPES`).
        test_score_thr (float, optional): Box score threshold of the
            evaluation of every run (teacher included); None keeps the
            configs'.
        teacher_eval_interval (int, optional): Evaluate the teacher every
            that many epochs too (its learning curve); None: at the end.
        noise_halves (bool): Measure evaluation noise: every run's AP on
            two random halves of the validation set (:mod:`.noise`).
        box_distributions (bool): Whether the heads predict box-edge
            distributions (GFL): the localization arms need them.
        feature_channels (tuple[int, int], optional): The student's and the
            teacher's FPN channels when they differ (the feature arms' PKD
            term gets a connector between them); None: the same.
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
    classifier: ClassifierKind = SOFTMAX
    test_score_thr: Optional[float] = None
    teacher_eval_interval: Optional[int] = None
    noise_halves: bool = False
    box_distributions: bool = False
    feature_channels: Optional[Tuple[int, int]] = None

    def model_overrides(self) -> Dict[str, Any]:
        """What every run (teacher included) changes in ``model``."""
        if self.test_score_thr is None:
            return {}
        return dict(test_cfg=dict(score_thr=self.test_score_thr))

    def supports(self, method: Method) -> bool:
        """Whether ``method`` has a loss for this regime's classifiers
        (and, for a location option, a dense distiller)."""
        if (method.distill_locations is not None
                and self.classifier != SIGMOID):
            return False
        if method.distill_rois is not None and self.classifier != SOFTMAX:
            return False
        if method.box_weight_mode is not None and not self.box_distributions:
            return False
        return (method.loss_type is None
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
        # the synthetic teachers' FPNs are twice as wide as the students'
        feature_channels=(32, 64),
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
        classifier=SIGMOID, box_distributions=True,
        **kwargs)


def _rtmdet(name: str, **kwargs) -> Regime:
    return _synthetic(name, 'rtmdet', methods=('student', 'KD', 'EA-KD'),
                      classifier=SIGMOID, **kwargs)


def _frcnn_converged(name: str, student: str, feature_channels: int,
                     num_train: int = 400,
                     data_root: str = 'data/synthetic_v1000',
                     teacher_eval_interval: int = 6,
                     **kwargs) -> Regime:
    """A long-schedule two-stage regime (README, "Evidence"): the 32-channel
    synthetic teacher and ``student`` trained for a long schedule, a 1000-image
    validation set (evaluation noise measured), learning curves of the
    teacher every ``teacher_eval_interval`` epochs."""
    return Regime(
        name=name,
        teacher_config=f'{SYNTHETIC_CONFIGS}frcnn_teacher_synthetic.py',
        student_config=f'{SYNTHETIC_CONFIGS}frcnn_{student}_tiny_synthetic.py',
        kd_config=(f'{SYNTHETIC_CONFIGS}kd_frcnn_{student}_teacher_tiny_'
                   'synthetic.py'),
        methods=('student', 'KD', 'EA-KD', 'DKD', 'EA-DKD', 'KD-xEA', 'KD-fg',
                 'EA-KD-T1'),
        num_train=num_train, num_val=1000, data_root=data_root,
        teacher_eval_interval=teacher_eval_interval, noise_halves=True,
        feature_channels=(feature_channels, 64),
        **kwargs)


def _frcnn_n1600(name: str, student: str, feature_channels: int,
                 epochs: int) -> Regime:
    """A long-schedule two-stage regime on the 1600-image set, teacher and
    students trained ``epochs`` epochs, the teacher evaluated every 3."""
    return _frcnn_converged(
        name, student, feature_channels, num_train=1600,
        data_root='data/synthetic_n1600_v1000', teacher_eval_interval=3,
        teacher_epochs=epochs, student_epochs=epochs)


def _gfl_converged(name: str, student: str, feature_channels: int,
                   **kwargs) -> Regime:
    """The long-schedule dense regime (README, "Evidence"): the 32-channel
    synthetic GFL teacher and ``student`` on the 1600-image set, a 1000-image
    validation set (evaluation noise measured), the teacher's learning curve
    every 3 epochs; the logit, localization and feature arms."""
    return Regime(
        name=name,
        teacher_config=f'{SYNTHETIC_CONFIGS}gfl_teacher_synthetic.py',
        student_config=f'{SYNTHETIC_CONFIGS}gfl_{student}_tiny_synthetic.py',
        kd_config=(f'{SYNTHETIC_CONFIGS}kd_gfl_{student}_teacher_tiny_'
                   'synthetic.py'),
        methods=('student', 'KD', 'EA-KD', 'KD-pos', 'LD', 'EA-LD', 'KD+LD',
                 'EA-KD+EA-LD', 'PKD', 'EA-PKD'),
        classifier=SIGMOID, box_distributions=True,
        num_train=1600, num_val=1000, data_root='data/synthetic_n1600_v1000',
        teacher_eval_interval=3, noise_halves=True,
        feature_channels=(feature_channels, 64),
        **kwargs)


REGIMES: Dict[str, Regime] = {
    # What the README's study and the demo run (see README, "Evidence").
    'frcnn': _frcnn('frcnn', teacher_epochs=12, student_epochs=4,
                    num_train=400, num_val=300, data_root='data/synthetic'),
    # The long-schedule two-stage regimes of the card's two pairs (README,
    # "Evidence"): one teacher, a ResNet and a MobileNetV2 student, each about
    # 10-14 AP below it after 60 epochs. Not at their schedule-length plateau
    # (README: 72 epochs still add about 1 AP).
    'frcnn-conv': _frcnn_converged('frcnn-conv', 'r14', 28,
                                   teacher_epochs=60, student_epochs=60),
    'frcnn-mv2-conv': _frcnn_converged('frcnn-mv2-conv', 'mv2x025n16s', 16,
                                       teacher_epochs=60, student_epochs=60),
    # Their pilots on four times the training images (the first 400 are the
    # images above; the validation set is the same) at the same number of
    # iterations (15 epochs of 1600 images = 60 of 400), teacher included.
    # README: the students gain 20+ AP, their seed spread stays about 2 AP,
    # and 15 epochs is not the plateau (30 epochs add about 7 AP).
    'frcnn-conv-n1600': _frcnn_n1600(
        'frcnn-conv-n1600', 'r14', 28, 15),
    # On 1600 images the 14-channel student ends 4-8 AP below the teacher:
    # the 8-channel one (11-16 AP below), for a capacity gap.
    'frcnn-r8-conv-n1600': _frcnn_n1600(
        'frcnn-r8-conv-n1600', 'r8', 16, 15),
    # The MobileNetV2 student on them (not piloted yet).
    'frcnn-mv2-conv-n1600': _frcnn_n1600(
        'frcnn-mv2-conv-n1600', 'mv2x025n16s', 16, 15),
    # The 1600-image pair at twice the schedule (teacher included): a
    # ResNet-8 student trained 30 epochs gained 7.4 AP over 15, and its last
    # three evaluations (epochs 24-30) were within 0.5 AP (scouting:
    # results/SCOUTING.md).
    'frcnn-r8-conv-n1600-e30': _frcnn_n1600(
        'frcnn-r8-conv-n1600-e30', 'r8', 16, 30),
    'frcnn-mv2-conv-n1600-e30': _frcnn_n1600(
        'frcnn-mv2-conv-n1600-e30', 'mv2x025n16s', 16, 30),
    # CI: the same code path with a tiny data set and one short epoch.
    'frcnn-short': _frcnn('frcnn-short', teacher_epochs=1, student_epochs=1,
                          num_train=16, num_val=8,
                          data_root='data/synthetic_short',
                          noise_halves=True),
    # Dense heads (sigmoid EA): see README, "Dense detectors".
    'gfl': _gfl('gfl', teacher_epochs=24, student_epochs=6, num_train=400,
                num_val=300, data_root='data/synthetic'),
    # The converged dense regime of issue 16 on the two-stage regime's data
    # and schedule (1600 images, 30 epochs, teacher included), with the
    # ResNet-8-wide student. Not piloted yet: its student and KD pilots come
    # before any EA arm (README, "Toward a converged regime").
    'gfl-r8-conv-n1600-e30': _gfl_converged(
        'gfl-r8-conv-n1600-e30', 'r8', 16, teacher_epochs=30,
        student_epochs=30),
    # After one epoch a GFL scores below the default 0.05 threshold (the
    # quality focal loss starts from the 0.01 prior): keep every box, so that
    # COCO AP is defined.
    'gfl-short': _gfl('gfl-short', teacher_epochs=1, student_epochs=1,
                      num_train=16, num_val=8,
                      data_root='data/synthetic_short',
                      test_score_thr=0.0, noise_halves=True),
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
                            test_score_thr=0.0, noise_halves=True),
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
    missing = [(n, METHODS[n].loss_weight_from) for n in names
               if METHODS[n].loss_weight_from not in (None, *names)]
    if missing:
        raise ValueError(
            'method(s) ' + ', '.join(f'{n} (needs {source})'
                                     for n, source in missing) +
            ' measure their loss_weight from another method\'s runs; add '
            'that method to the study.')
    unsupported = [n for n in names if not regime.supports(METHODS[n])]
    if unsupported:
        raise ValueError(
            f'method(s) {unsupported} have no {regime.classifier} loss (or '
            f'options of another head family), so regime {regime.name!r} '
            'cannot run them; it runs '
            f'{[n for n, m in METHODS.items() if regime.supports(m)]}.')
    return tuple(METHODS[n] for n in names)
