#!/usr/bin/env python
"""Test a detector: mmdet's ``tools/test.py`` for plain and distillation configs.

Same command line as mmdet's tool (``CONFIG CHECKPOINT``, ``--work-dir``,
``--out``, ``--show-dir``, ``--tta``, ``--cfg-options``, ``--launcher``, ...).
A distillation config is evaluated as its plain student: the teacher is neither
built nor loaded, so it needs no teacher checkpoint. The run uses
:class:`StudentRunner` whatever the config's ``runner_type`` (a subclass of it
is honoured; a runner without its fixes is refused).
"""
import sys


import mmdet_eakd  # noqa: E402,F401  (registers modules, allowlists checkpoints)
from mmdet_eakd.engine import (CheckpointDownloadError,  # noqa: E402
                               StudentRunner, bind_runner,
                               destroy_process_group, load_mmdet_tool)


def main() -> None:
    tool = load_mmdet_tool('test')
    bind_runner(tool, StudentRunner)
    try:
        tool.main()
    except CheckpointDownloadError as error:
        sys.exit(f'error: {error}')
    destroy_process_group()


if __name__ == '__main__':
    main()
