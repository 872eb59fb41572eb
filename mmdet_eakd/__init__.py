"""mmdet-eakd: Entropy-based Adaptive KD for MMDetection 3.x.

Importing the package registers its modules in mmdet's registries, so a config
only needs ``custom_imports=dict(imports=['mmdet_eakd'],
allow_failed_imports=False)``.
"""
from . import datasets, engine, losses, models  # noqa: F401  (registration)

engine.allow_mmengine_checkpoints()

__version__ = '0.1.0'
