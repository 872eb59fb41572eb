"""Test a detector: mmdet's ``tools/test.py``, plain and distillation configs.

    python -m mmdet_eakd.test CONFIG CHECKPOINT [--work-dir DIR] [options...]

Same command line as mmdet's tool (``CONFIG CHECKPOINT``, ``--work-dir``,
``--out``, ``--show-dir``, ``--tta``, ``--cfg-options``, ``--launcher``, ...).
CONFIG is a file or a shipped config's name
(``mmdet_eakd::configs/eakd_frcnn_r101_r18.py``, see :mod:`mmdet_eakd.scope`).
A distillation config is evaluated as its plain student: the teacher is neither
built nor loaded, so it needs no teacher checkpoint. The run uses
:class:`~mmdet_eakd.engine.StudentRunner` whatever the config's
``runner_type`` (a subclass of it is honoured; a runner without its fixes is
refused).
"""
from mmdet_eakd.engine import StudentRunner, run_mmdet_tool


def main() -> None:
    """Run mmdet's test tool on ``sys.argv`` with :class:`StudentRunner`."""
    run_mmdet_tool('test', StudentRunner)


if __name__ == '__main__':
    main()
