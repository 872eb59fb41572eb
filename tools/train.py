#!/usr/bin/env python
"""Train a detector: mmdet's ``tools/train.py`` with this package's fixes.

Same command line as mmdet's tool (``--work-dir``, ``--amp``, ``--resume
[CHECKPOINT]``, ``--cfg-options``, ``--launcher``, ...) and any mmdet config,
``mmdet::`` bases included. On top of it:

* ``--resume`` works on torch >= 2.6 (mmengine's checkpoint types are
  allowlisted for ``torch.load(weights_only=True)``; nothing else is);
* distributed training works on a CPU-only torch (gloo backend), e.g.
  ``tools/dist_train.sh CONFIG 2`` on a machine without a GPU, each process
  with its share of the machine's cores;
* the run uses :class:`EAKDRunner` whatever the config's ``runner_type`` (a
  subclass of it is honoured; a runner without its fixes is refused);
* a checkpoint URL that cannot be fetched ends the run with one message that
  says how to pass a local file.
"""
import sys


import mmdet_eakd  # noqa: E402,F401  (registers modules, allowlists checkpoints)
from mmdet_eakd.engine import (CheckpointDownloadError,  # noqa: E402
                               EAKDRunner, bind_runner, destroy_process_group,
                               load_mmdet_tool)


def main() -> None:
    tool = load_mmdet_tool('train')
    bind_runner(tool, EAKDRunner)
    try:
        tool.main()
    except CheckpointDownloadError as error:
        sys.exit(f'error: {error}')
    destroy_process_group()


if __name__ == '__main__':
    main()
