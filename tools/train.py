#!/usr/bin/env python
"""Train a detector: mmdet's ``tools/train.py`` with this package's fixes.

Same command line as mmdet's tool (``--work-dir``, ``--amp``, ``--resume
[CHECKPOINT]``, ``--cfg-options``, ``--launcher``, ...) and any mmdet config,
``mmdet::`` bases included. On top of it:

* ``--resume`` works on torch >= 2.6 (mmengine's checkpoint types are
  allowlisted for ``torch.load(weights_only=True)``; nothing else is);
* distributed training works on a CPU-only torch (gloo backend), e.g.
  ``tools/dist_train.sh CONFIG 2`` on a machine without a GPU.
"""
import mmdet_eakd  # noqa: F401  (registers modules, allowlists checkpoints)
from mmdet_eakd.engine import (EAKDRunner, destroy_process_group,
                               load_mmdet_tool)


def main() -> None:
    tool = load_mmdet_tool('train')
    tool.Runner = EAKDRunner
    tool.main()
    destroy_process_group()


if __name__ == '__main__':
    main()
