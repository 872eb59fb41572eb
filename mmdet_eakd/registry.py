"""Registry nodes of the ``mmdet_eakd`` scope: one child of each of mmdet's.

A config that inherits a shipped config by its scope name
(``_base_ = 'mmdet_eakd::configs/...'``, see :mod:`mmdet_eakd.scope`) gets
``_scope_='mmdet_eakd'`` from mmengine on every type dict it inherits, and
mmengine builds such a dict from the ``mmdet_eakd`` node of the registry tree,
which it finds by importing this module. Without these nodes mmengine falls
back to its root registries, which lack mmdet's modules (``CocoDataset``,
``FasterRCNN``, ...).

Each node is empty and a child of mmdet's node of the same name: a lookup falls
through to mmdet, where this package registers its own modules too.
"""
from mmengine.registry import Registry

from mmdet import registry as mmdet_registry
from .scope import SCOPE


class ChildRegistry(Registry):
    """An empty registry node under one of mmdet's, in this package's scope.

    ``Registry.get`` reads a parent's table directly, without importing the
    parent's modules first, so this node imports them itself.

    Args:
        parent (Registry): The mmdet node; its name is reused.
    """

    def __init__(self, parent: Registry) -> None:
        super().__init__(parent.name, parent=parent, scope=SCOPE,
                         locations=[SCOPE])

    def import_from_location(self) -> None:
        """Import mmdet's modules of this node, then this package's."""
        self.parent.import_from_location()
        super().import_from_location()


RUNNERS = ChildRegistry(mmdet_registry.RUNNERS)
RUNNER_CONSTRUCTORS = ChildRegistry(mmdet_registry.RUNNER_CONSTRUCTORS)
LOOPS = ChildRegistry(mmdet_registry.LOOPS)
HOOKS = ChildRegistry(mmdet_registry.HOOKS)
DATASETS = ChildRegistry(mmdet_registry.DATASETS)
DATA_SAMPLERS = ChildRegistry(mmdet_registry.DATA_SAMPLERS)
TRANSFORMS = ChildRegistry(mmdet_registry.TRANSFORMS)
MODELS = ChildRegistry(mmdet_registry.MODELS)
MODEL_WRAPPERS = ChildRegistry(mmdet_registry.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = ChildRegistry(mmdet_registry.WEIGHT_INITIALIZERS)
OPTIMIZERS = ChildRegistry(mmdet_registry.OPTIMIZERS)
OPTIM_WRAPPERS = ChildRegistry(mmdet_registry.OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = ChildRegistry(
    mmdet_registry.OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = ChildRegistry(mmdet_registry.PARAM_SCHEDULERS)
METRICS = ChildRegistry(mmdet_registry.METRICS)
EVALUATOR = ChildRegistry(mmdet_registry.EVALUATOR)
TASK_UTILS = ChildRegistry(mmdet_registry.TASK_UTILS)
VISUALIZERS = ChildRegistry(mmdet_registry.VISUALIZERS)
VISBACKENDS = ChildRegistry(mmdet_registry.VISBACKENDS)
LOG_PROCESSORS = ChildRegistry(mmdet_registry.LOG_PROCESSORS)
