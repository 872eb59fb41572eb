#!/usr/bin/env python
"""Train a detector: ``python -m mmdet_eakd.train`` (:mod:`mmdet_eakd.train`).

Same command line as mmdet's ``tools/train.py``; CONFIG is a file or a shipped
config's name (``mmdet_eakd::configs/eakd_frcnn_r101_r18.py``).
"""
from mmdet_eakd.train import main

if __name__ == '__main__':
    main()
