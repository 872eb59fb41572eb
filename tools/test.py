#!/usr/bin/env python
"""Test a detector: ``python -m mmdet_eakd.test`` (see :mod:`mmdet_eakd.test`).

Same command line as mmdet's ``tools/test.py``; a distillation config is
evaluated as its plain student (no teacher needed).
"""
from mmdet_eakd.test import main

if __name__ == '__main__':
    main()
