"""Train a detector: mmdet's ``tools/train.py`` with this package's fixes.

    python -m mmdet_eakd.train CONFIG [--work-dir DIR] [mmdet's options...]
    torchrun --nproc_per_node 8 -m mmdet_eakd.train CONFIG --launcher pytorch

Same command line as mmdet's tool (``--work-dir``, ``--amp``, ``--resume
[CHECKPOINT]``, ``--cfg-options``, ``--launcher``, ...) and any mmdet config,
``mmdet::`` bases included. CONFIG is a file or a shipped config's name
(``mmdet_eakd::configs/eakd_frcnn_r101_r18.py``, see :mod:`mmdet_eakd.scope`).
On top of mmdet's tool:

* ``--resume`` works on torch >= 2.6 (mmengine's checkpoint types are
  allowlisted for ``torch.load(weights_only=True)``; nothing else is);
* distributed training works on a CPU-only torch (gloo backend), e.g.
  ``tools/dist_train.sh CONFIG 2`` on a machine without a GPU, each process
  with its share of the machine's cores;
* the run uses :class:`~mmdet_eakd.engine.EAKDRunner` whatever the config's
  ``runner_type`` (a subclass of it is honoured; a runner without its fixes is
  refused);
* a checkpoint URL that cannot be fetched ends the run with one message that
  says how to pass a local file.
"""
from mmdet_eakd.engine import EAKDRunner, run_mmdet_tool


def main() -> None:
    """Run mmdet's train tool on ``sys.argv`` with :class:`EAKDRunner`."""
    run_mmdet_tool('train', EAKDRunner)


if __name__ == '__main__':
    main()
