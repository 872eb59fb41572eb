#!/usr/bin/env python
"""Check shipped configs offline: build, one training step, print the losses.

Each config's model is built with random weights and no downloads (``Pretrained``
inits stripped; a distillation config's teacher is loaded strictly from a random
checkpoint written into a temporary directory), then one training step
(forward, backward, SGD step) runs on a synthetic batch at a small resolution.

    python tools/check_configs.py                       # every config in configs/
    python tools/check_configs.py configs/eakd_frcnn_r101_r18.py --img-size 256
"""
import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import mmdet_eakd  # noqa: E402,F401  (first: quiets mmengine)

ROOT = Path(__file__).resolve().parents[1]


def shipped_configs() -> List[Path]:
    """Every runnable config under ``configs/`` (``_base_`` parts excluded)."""
    return sorted(p for p in (ROOT / 'configs').rglob('*.py')
                  if '_base_' not in p.parts)


def check_config(config: Path, work_dir: Path, img_size: int,
                 batch_size: int) -> Dict[str, float]:
    """Build ``config`` offline and run one training step.

    Args:
        config (Path): The config file.
        work_dir (Path): Scratch directory (random teacher checkpoint).
        img_size (int): Longer side of the synthetic images.
        batch_size (int): Images per batch (the second is shorter, so the
            batch is padded as in real training).

    Returns:
        dict[str, float]: The logged losses and statistics of the step.
    """
    import torch
    from mmengine.optim import OptimWrapper

    from mmdet.testing import demo_mm_inputs
    from mmdet_eakd.distill import KD_LOSS, adapter_for
    from mmdet_eakd.utils import build_offline_model

    model = build_offline_model(config, work_dir)
    num_classes = adapter_for(model).num_classes(model)
    shapes = [(3, img_size - 32 * (i % 2), img_size)
              for i in range(batch_size)]
    batch = demo_mm_inputs(batch_size, image_shapes=shapes,
                           num_items=[3] * batch_size,
                           num_classes=num_classes)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-4))
    log_vars = model.train_step(batch, optim)
    values = {key: value.item() for key, value in log_vars.items()}
    bad = [key for key, value in values.items() if not math.isfinite(value)]
    if bad:
        raise FloatingPointError(f'non-finite values for {bad}')
    if hasattr(model, 'teacher'):
        missing = [
            term.key(KD_LOSS) for term in model.terms()
            if term.key(KD_LOSS) not in values
        ]
        if missing:
            raise KeyError(f'a distillation config logged no {missing}')
    return values


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='*', type=Path,
                        help='configs to check (default: all under configs/)')
    parser.add_argument('--img-size', type=int, default=192)
    parser.add_argument('--batch-size', type=int, default=2)
    args = parser.parse_args(argv)
    if args.img_size < 64 or args.img_size % 32:
        parser.error('--img-size must be a multiple of 32, at least 64')
    if args.batch_size < 1:
        parser.error('--batch-size must be >= 1')
    for config in args.configs:
        if not config.is_file():
            parser.error(f'config {config} does not exist')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import mmdet_eakd  # noqa: F401
    from mmdet.utils import register_all_modules
    register_all_modules()

    configs = args.configs or shipped_configs()
    failures = []
    for config in configs:
        start = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                values = check_config(config, Path(tmp), args.img_size,
                                      args.batch_size)
            except Exception as error:  # report every config, then fail
                failures.append(config)
                print(f'FAIL {config}: {type(error).__name__}: {error}',
                      flush=True)
                continue
        shown = '  '.join(f'{k}: {v:.4f}' for k, v in values.items())
        print(f'ok   {config} ({time.time() - start:.1f} s)\n     {shown}',
              flush=True)
    print(f'{len(configs) - len(failures)}/{len(configs)} configs passed')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
