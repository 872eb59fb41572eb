#!/usr/bin/env python
"""Test a detector: mmdet's ``tools/test.py`` for plain and distillation configs.

Same command line as mmdet's tool (``CONFIG CHECKPOINT``, ``--work-dir``,
``--out``, ``--show-dir``, ``--tta``, ``--cfg-options``, ``--launcher``, ...).
A distillation config is evaluated as its plain student: the teacher is neither
built nor loaded, so it needs no teacher checkpoint.
"""
import mmdet_eakd  # noqa: F401  (registers modules, allowlists checkpoints)
from mmdet_eakd.engine import (StudentRunner, destroy_process_group,
                               load_mmdet_tool)


def main() -> None:
    tool = load_mmdet_tool('test')
    tool.Runner = StudentRunner
    tool.main()
    destroy_process_group()


if __name__ == '__main__':
    main()
