"""One clear error when a checkpoint URL cannot be fetched (e.g. offline).

mmengine downloads ``http(s)://``, ``torchvision://``, ``open-mmlab://`` and
``mmcls://`` checkpoints into torch's hub cache; on a machine without network
that ends in a long traceback whose last line is ``URLError``. The loaders
registered here for those prefixes call mmengine's own and turn a failed
download into :class:`CheckpointDownloadError`, whose message names the URL,
the file in torch's hub cache that makes the download unnecessary, and how to
pass a local file instead. Registered at import of ``mmdet_eakd``.
"""
import http.client
import os.path as osp
from typing import Callable, Optional
from urllib.error import URLError
from urllib.parse import urlparse

import torch.hub
from mmengine.runner import CheckpointLoader
from mmengine.runner.checkpoint import (get_deprecated_model_names,
                                        get_external_models,
                                        get_torchvision_models,
                                        load_from_http, load_from_local,
                                        load_from_mmcls, load_from_openmmlab,
                                        load_from_torchvision)

#: Failures of the download itself (no route, DNS, refused, HTTP error, cut).
DOWNLOAD_ERRORS = (URLError, ConnectionError, TimeoutError,
                   http.client.HTTPException)

#: mmengine's loaders that download, by the prefixes they are registered for.
NETWORK_LOADERS = (
    (('http://', 'https://'), load_from_http),
    (('modelzoo://', 'torchvision://'), load_from_torchvision),
    (('open-mmlab://', 'openmmlab://'), load_from_openmmlab),
    (('mmcls://', ), load_from_mmcls),
)

#: How to pass a local file when the config key that names the URL is unknown.
GENERIC_LOCAL_FILE_HINT = (
    'pass the local file where the URL is given: in the config entry that '
    'names it (for a backbone\'s Pretrained init_cfg: --cfg-options '
    'model.backbone.init_cfg.checkpoint=PATH) or on the command line')


#: How to get a torchvision that loads (``torchvision://`` names need it).
TORCHVISION_FIX = (
    'bash tools/setup_env.sh builds .venv with the pair of '
    'requirements/torch.txt (torch 2.13.0, CUDA build, + torchvision 0.28.0; '
    'remove a .venv whose torch has no torchvision first); in your own '
    'environment '
    'install the torchvision release built for your torch (e.g. torch 2.13 '
    '-> torchvision 0.28, 2.14 -> 0.29; the table is in '
    'tools/setup_env.sh)')


class CheckpointDownloadError(RuntimeError):
    """A checkpoint URL could not be fetched; the message says what to do."""

    checkpoint: Optional[str] = None  #: the path or URL that was asked for
    reason: Optional[str] = None  #: why the download failed


def checkpoint_url(checkpoint: str) -> Optional[str]:
    """The ``http(s)`` URL that ``checkpoint`` is downloaded from, if known.

    Args:
        checkpoint (str): A checkpoint path or URL as written in a config.

    Returns:
        str | None: The URL for ``http(s)://`` and ``torchvision://`` /
        ``modelzoo://`` names, else ``None``.
    """
    if checkpoint.startswith(('http://', 'https://')):
        return checkpoint
    for prefix in ('torchvision://', 'modelzoo://'):
        if checkpoint.startswith(prefix):
            return get_torchvision_models().get(checkpoint[len(prefix):])
    return None


def hub_cache_file(url: str) -> str:
    """Where ``torch.hub`` (and so mmengine) caches the download of ``url``."""
    return osp.join(torch.hub.get_dir(), 'checkpoints',
                    osp.basename(urlparse(url).path))


def download_error(checkpoint: str, reason: object,
                   config_key: Optional[str] = None
                   ) -> CheckpointDownloadError:
    """The error for a checkpoint that could not be downloaded.

    Args:
        checkpoint (str): The path or URL as written in the config.
        reason (object): The failure, e.g. the ``URLError``.
        config_key (str, optional): The config key that names the checkpoint,
            e.g. ``'model.teacher.checkpoint'``; ``None`` when unknown.

    Returns:
        CheckpointDownloadError: With a message that names the cause and the
        two ways around it.
    """
    url = checkpoint_url(checkpoint)
    shown = checkpoint if url in (None, checkpoint) else f'{checkpoint} ({url})'
    local = (f'pass the local file: --cfg-options {config_key}=PATH'
             if config_key else GENERIC_LOCAL_FILE_HINT)
    if url is not None:
        cache = ('or copy it into torch\'s hub cache, from where it is read '
                 f'without downloading: {hub_cache_file(url)}')
    else:
        cache = ('or copy the file it downloads into torch\'s hub cache '
                 '(~/.cache/torch/hub/checkpoints/ there) to '
                 f'{osp.join(torch.hub.get_dir(), "checkpoints")} here')
    error = CheckpointDownloadError(
        f'The checkpoint {shown} could not be fetched: {reason}.\n'
        'Download it on a machine that can reach it, then\n'
        f'  - {local},\n  - {cache}.')
    error.checkpoint, error.reason = checkpoint, str(reason)
    return error


def _reporting_failed_downloads(loader: Callable) -> Callable:
    """``loader`` with download failures raised as :func:`download_error`."""

    def load(filename: str, map_location=None):
        try:
            return loader(filename, map_location=map_location)
        except DOWNLOAD_ERRORS as error:
            raise download_error(filename, error) from error

    load.__name__ = load.__qualname__ = loader.__name__
    load.__doc__ = loader.__doc__
    return load


def report_failed_downloads() -> None:
    """Register :data:`NETWORK_LOADERS` with clear download errors."""
    for prefixes, loader in NETWORK_LOADERS:
        CheckpointLoader.register_scheme(
            prefixes, _reporting_failed_downloads(loader), force=True)


def check_checkpoint_name(checkpoint: str) -> str:
    """Which of mmengine's loaders reads ``checkpoint``, checked offline.

    Nothing is downloaded: a ``scheme://`` name must have a registered
    loader (else mmengine would read it as a local file), and a
    ``torchvision://`` / ``modelzoo://`` or ``open-mmlab://`` name must be
    one of the models that loader knows (torchvision's, or mmengine's list
    of OpenMMLab models). Local paths and ``http(s)://`` URLs only need
    their loader.

    Args:
        checkpoint (str): A path or URL as written in a config.

    Returns:
        str: The loader's name, e.g. ``'load_from_torchvision'``.

    Raises:
        ModuleNotFoundError: For a torchvision name when torchvision does
            not load here; the message says how to get it.
        ValueError: For a scheme without a loader, or a model name that its
            loader does not know.
    """
    # mmengine's own lookup by prefix (also what load_checkpoint uses).
    loader = CheckpointLoader._get_checkpoint_loader(checkpoint)
    name = getattr(loader, '__name__', repr(loader))
    scheme, sep, model = checkpoint.partition('://')
    if sep and name == load_from_local.__name__:
        raise ValueError(
            f'{checkpoint}: no checkpoint loader is registered for '
            f'{scheme}://, so mmengine would read it as a local file. Use a '
            'path, an http(s):// URL, or a name of a registered scheme '
            '(torchvision://, open-mmlab://, mmcls://).')
    if name == load_from_torchvision.__name__:
        try:
            models = get_torchvision_models()
        except (ImportError, RuntimeError) as error:
            raise ModuleNotFoundError(
                f'{checkpoint} needs torchvision, which does not load here '
                f'({type(error).__name__}: {error}). To fix: '
                f'{TORCHVISION_FIX}.') from error
        # As load_from_torchvision: ResNet50_Weights.IMAGENET1K_V1 works.
        known = model.lower().replace('_weights', '') in models
        source = 'torchvision\'s model list'
    elif name == load_from_openmmlab.__name__:
        model = get_deprecated_model_names().get(model, model)
        known = model in get_external_models()
        source = 'mmengine\'s list of OpenMMLab models (hub/openmmlab.json)'
    else:
        known = True
    if not known:
        raise ValueError(f'{checkpoint}: {model!r} is not in {source}; '
                         'check the name.')
    return name
