"""Data sets of mmdet-eakd.

``synthetic`` is imported lazily (PEP 562) so that
``python -m mmdet_eakd.datasets.synthetic`` runs without runpy's
"found in sys.modules" warning.
"""
from typing import Any

__all__ = ['CLASSES', 'generate_synthetic_coco']


def __getattr__(name: str) -> Any:
    """Resolve the public names from :mod:`mmdet_eakd.datasets.synthetic`."""
    if name in __all__:
        from . import synthetic
        return getattr(synthetic, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
