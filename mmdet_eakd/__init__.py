"""mmdet-eakd: Entropy-based Adaptive KD for MMDetection 3.x.

Importing the package registers its modules in mmdet's registries, so a config
only needs ``custom_imports=dict(imports=['mmdet_eakd'],
allow_failed_imports=False)``. It also lets mmengine resolve the shipped
configs by name (``_base_ = 'mmdet_eakd::configs/...'``, see
:mod:`mmdet_eakd.scope`), lets ``torch.load`` read the checkpoints of plain
mmengine (see :mod:`mmdet_eakd.engine.checkpoint`) and turns a failed
checkpoint download into one clear error (see :mod:`mmdet_eakd.downloads`).

Train and test, configs by path or by name, with mmdet's command line:
``python -m mmdet_eakd.train CONFIG`` and
``python -m mmdet_eakd.test CONFIG CHECKPOINT``.
"""
import warnings

# mmengine imports pkg_resources (and reloads it: importlib), whose deprecation
# warning no user can act on. Entry points import this package before
# mmengine, so this one filter quiets them all; every other warning shows.
warnings.filterwarnings(
    'ignore', message='pkg_resources is deprecated as an API',
    category=UserWarning, module=r'mmengine\.|importlib$')

from . import (datasets, downloads, engine, losses,  # noqa: E402,F401
               models, scope)  # (registration)

scope.register_config_scope()
engine.allow_mmengine_checkpoints()
downloads.report_failed_downloads()

__version__ = '0.1.0'
